"""Blocks -> report.md, and report.md -> one self-contained report.html.

The Markdown is the one source: markdown-it-py renders it to HTML (CommonMark with tables, raw
HTML off), a walk over its tokens adds heading anchors, verdict colours and data-URI images, and
the Jinja2 template templates/report.html.j2 lays out the page (no scripts, nothing to fetch).
"""
from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import jinja2
import pandas as pd
from markdown_it import MarkdownIt
from markupsafe import Markup

from .blocks import Block
from .text import slug, unique_slugs, without_absolute_paths
from .verdicts import CANNOT_JUDGE, NOT_EVIDENCE, VERDICT_COLOURS

# a cell that starts with a number (after an optional bold marker or sign) is right-aligned
_NUMBER = re.compile(r"^\**[-+−]?(\d[\d,]*(\.\d*)?|\.\d+)")
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("vggbench.report", "templates"),
                                autoescape=jinja2.select_autoescape(["html", "j2"]))


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    """A GitHub-style table; columns whose filled cells all start with a number align right."""
    rows = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    cols = [_cell(c) for c in df.columns]
    align = []
    for j in range(len(cols)):
        filled = [r[j] for r in rows if r[j] not in ("", "-")]
        align.append("---:" if filled and all(_NUMBER.match(v) for v in filled) else "---")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _contents(blocks: list[Block], start: int) -> str:
    """Links to every h2 and h3 after the contents block, as a nested Markdown list."""
    heads = [(i, b) for i, b in enumerate(blocks) if b.kind.startswith("h")]
    anchors = unique_slugs(b.text for _, b in heads)
    return "\n".join(f"{'  ' if b.kind == 'h3' else ''}- [{b.text}](#{a})"
                     for (i, b), a in zip(heads, anchors) if i > start and b.kind in ("h2", "h3"))


def _plain(text: str) -> str:
    """A caption as literal text inside the italics it is set in (e.g. `VGG*_Weights`)."""
    return re.sub(r"([*_\[\]])", r"\\\1", text)


def render_md(blocks: list[Block], out: Path) -> str:
    parts = []
    for i, b in enumerate(blocks):
        if b.kind.startswith("h"):
            parts.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "toc":
            parts.append(_contents(blocks, i))
        elif b.kind == "table":
            parts.append((f"*{_plain(b.text)}*\n\n" if b.text else "") + md_table(b.df))
        elif b.kind == "img":
            parts.append(f"![{_plain(b.text)}]({b.path.relative_to(out).as_posix()})\n\n*{_plain(b.text)}*")
    return without_absolute_paths("\n\n".join(parts) + "\n", out)


def _verdict_class(text: str) -> str | None:
    """The CSS class of a table cell that is a verdict (verdicts.py)."""
    text = re.sub(r"^\d+ ", "", text)   # a count of verdicts ("3 reproduced") is coloured as the verdict
    if text.endswith(f"({NOT_EVIDENCE})"):
        return slug(NOT_EVIDENCE)
    if text.startswith(f"{CANNOT_JUDGE}:"):   # "cannot be judged: A did not train"
        return slug(CANNOT_JUDGE)
    return slug(text) if text in VERDICT_COLOURS else None


def render_html(markdown: str, out: Path) -> str:
    """report.md as one HTML page: headings get anchors, verdict cells a colour, images are inlined."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    heads = [(tok, nxt) for tok, nxt in zip(tokens, tokens[1:]) if tok.type == "heading_open"]
    for (tok, _), anchor in zip(heads, unique_slugs(nxt.content for _, nxt in heads)):
        tok.attrSet("id", anchor)
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.type == "td_open" and (cls := _verdict_class(nxt.content.strip().strip("*"))):
            tok.attrSet("class", cls)
        elif tok.type == "inline":
            for child in tok.children or []:
                if child.type == "image":
                    data = base64.b64encode((out / child.attrGet("src")).read_bytes()).decode()
                    child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    title = next((t.content for t, o in zip(tokens[1:], tokens) if o.type == "heading_open" and o.tag == "h1"),
                 "report")
    return _TEMPLATES.get_template("report.html.j2").render(title=title, body=Markup(body))
