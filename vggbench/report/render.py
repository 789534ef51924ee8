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
from .text import slug
from .verdicts import NOT_EVIDENCE, VERDICT_COLOURS

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
    lines = []
    for b in blocks[start + 1:]:
        if b.kind in ("h2", "h3"):
            indent = "  " if b.kind == "h3" else ""
            lines.append(f"{indent}- [{b.text}](#{slug(b.text)})")
    return "\n".join(lines)


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
            parts.append((f"*{b.text}*\n\n" if b.text else "") + md_table(b.df))
        elif b.kind == "img":
            parts.append(f"![{b.text}]({b.path.relative_to(out).as_posix()})\n\n*{b.text}*")
    return "\n\n".join(parts) + "\n"


def _verdict_class(text: str) -> str | None:
    """The CSS class of a table cell that is a verdict (verdicts.py)."""
    if text.endswith(f"({NOT_EVIDENCE})"):
        return slug(NOT_EVIDENCE)
    return slug(text) if text in VERDICT_COLOURS else None


def render_html(markdown: str, out: Path) -> str:
    """report.md as one HTML page: headings get anchors, verdict cells a colour, images are inlined."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.type == "heading_open":
            tok.attrSet("id", slug(nxt.content))
        elif tok.type == "td_open" and (cls := _verdict_class(nxt.content.strip().strip("*"))):
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
