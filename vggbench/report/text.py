"""Numbers and counts as the report's text: mean ± std, status counts, anchors."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from .. import stats



def epochs_text(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def number(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def mean_std_text(values, digits: int = 1) -> str:
    m, sd, n = stats.mean_std(number(v) for v in values)
    if n == 0:
        return "-"
    return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {sd:.{digits}f}"


def mean_text(values, fmt: str = "{:.3g}") -> str:
    m, _, n = stats.mean_std(number(v) for v in values)
    return fmt.format(m) if n else "-"


def status_counts(statuses) -> str:
    counts = pd.Series(list(statuses), dtype=object).value_counts()
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def slug(text: str) -> str:
    """A heading's anchor as GitHub makes it (lower case, punctuation dropped, spaces to hyphens), so
    that the contents' links work in report.md on GitHub as in report.html."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def unique_slugs(texts) -> list[str]:
    """Anchors for headings in order; a repeated one gets -1, -2, ... (as GitHub numbers them)."""
    seen: dict[str, int] = {}
    out = []
    for text in texts:
        s = slug(text)
        out.append(f"{s}-{seen[s]}" if s in seen else s)
        seen[s] = seen.get(s, -1) + 1
    return out


def rel(path: Path, out: Path) -> str:
    """A path as the report names it: relative to the report's folder."""
    return Path(os.path.relpath(path, out)).as_posix()


_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[\w.+~-]+/)*[\w.+~-]+/?")


def without_absolute_paths(text: str, out: Path) -> str:
    """Absolute paths in `text` made relative to the report's folder when they lie in the folder
    above it (the results), else shortened to their last part: a report names no one's folders."""
    base = out.resolve().parent

    def fix(m: re.Match) -> str:
        p = Path(m.group(0))
        try:
            p.resolve().relative_to(base)
            return rel(p.resolve(), out.resolve()) + ("/" if m.group(0).endswith("/") else "")
        except ValueError:
            return "…/" + p.name
    return _ABSOLUTE.sub(fix, text)


def macs_unit(gmacs) -> tuple[float, str]:
    """(factor, name) to show MACs per image in: millions when GMACs would read 0.00x."""
    return (1000.0, "MMACs") if pd.to_numeric(pd.Series(gmacs), errors="coerce").max() < 0.1 else (1.0, "GMACs")
