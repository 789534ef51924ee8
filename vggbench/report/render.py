"""Blocks -> report.md and a self-contained report.html (figures embedded as data URIs)."""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

from .. import stats
from .blocks import Block
from .text import slug


def md_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = [cell(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_md(blocks: list[Block], out: Path) -> str:
    parts = []
    for b in blocks:
        if b.kind.startswith("h"):
            parts.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "table":
            parts.append((f"*{b.text}*\n\n" if b.text else "") + md_table(b.df))
        elif b.kind == "img":
            parts.append(f"![{b.text}]({b.path.relative_to(out).as_posix()})\n\n*{b.text}*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", t)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', t)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1.4em}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f2f2f2}caption{caption-side:top;text-align:left;font-size:12.5px;
color:#555;padding:2px 0}
figure{margin:.5em 0 1.5em}img{max-width:100%;height:auto;display:block}figcaption{font-size:12.5px;color:#555}
code{background:#f4f4f4;padding:0 3px}ul{margin:.2em 0}
.reproduced{color:#1a7f37;font-weight:600}.contradicted{color:#c0392b;font-weight:600}.inconclusive{color:#7f8c8d}
"""


def _html_table(b: Block) -> str:
    t = b.df.to_html(index=False, border=0, na_rep="", escape=True)
    for v in stats.VERDICTS:
        t = t.replace(f"<td>{v}</td>", f'<td class="{v}">{v}</td>')
    if b.text:
        t = t.replace(">", f"><caption>{_inline(b.text)}</caption>", 1)
    return t


def _html_paragraph(text: str) -> str:
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline(text)}</p>"


def render_html(blocks: list[Block]) -> str:
    body = []
    for b in blocks:
        if b.kind.startswith("h"):
            body.append(f'<{b.kind} id="{slug(b.text)}">{_inline(b.text)}</{b.kind}>')
        elif b.kind == "p":
            body.append(_html_paragraph(b.text))
        elif b.kind == "table":
            body.append(_html_table(b))
        elif b.kind == "img":
            data = base64.b64encode(b.path.read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.text)}">'
                        f"<figcaption>{_inline(b.text)}</figcaption></figure>")
    title = next((b.text for b in blocks if b.kind == "h1"), "report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>\n'
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
