"""Numbers and counts as the report's text: mean ± std, status counts, anchors."""
from __future__ import annotations

import math
import re

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
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
