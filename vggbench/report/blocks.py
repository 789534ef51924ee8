"""The report as data: a list of blocks (headings, paragraphs, tables, images) that each section
builds and render.py writes out twice, as Markdown and as HTML."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd



@dataclass
class Block:
    kind: str                        # "h1".."h4", "p", "table", "img"
    text: str = ""                   # heading / paragraph (markdown inline: `code`, **bold**, [a](url))
    df: pd.DataFrame | None = None   # table
    path: Path | None = None         # image file


def heading(level: int, text: str) -> Block:
    return Block(f"h{level}", text)


def paragraph(text: str) -> Block:
    return Block("p", text)


def table_block(df: pd.DataFrame, caption: str = "") -> Block:
    return Block("table", caption, df=df)


def image_block(path: Path, caption: str) -> Block:
    return Block("img", caption, path=path)
