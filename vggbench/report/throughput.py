"""Throughput as the records hold it, summarised so that noise shows: per case the median of the
seeds' medians, the lowest minimum and the highest maximum of their timing repeats, the spread
(max − min) / median, and a flag when the spread is large. The measurement itself is measure.py's;
this module only presents it."""
from __future__ import annotations

import math
import statistics

import pandas as pd

from ..grid import ABLATIONS
from .settings import Setting
from .text import number

SPREAD_FLAG = 0.5   # (max − min) / median above this: the timings disagree too much to compare cases


def _range(values, mins, maxs) -> tuple[float, float, float]:
    meds = [v for v in map(number, values) if math.isfinite(v) and v > 0]
    if not meds:
        return math.nan, math.nan, math.nan
    lows = [v for v in map(number, mins) if math.isfinite(v) and v > 0] + meds
    highs = [v for v in map(number, maxs) if math.isfinite(v)] + meds
    return statistics.median(meds), min(lows), max(highs)


def summarise(s: Setting, name: str) -> pd.DataFrame:
    """One row per case of the ablation that has records (in the ablation's order)."""
    df = s.rows[s.rows.ablation == name]
    out = []
    for case in ABLATIONS[name].cases:
        g = df[df.case == case.id]
        if g.empty:
            continue
        row = {"case": case.id, "n": len(g)}
        for kind in ("train", "infer"):
            med, lo, hi = _range(g[f"{kind}_images_per_s"], g[f"{kind}_images_per_s_min"],
                                 g[f"{kind}_images_per_s_max"])
            row.update({f"{kind}_median": med, f"{kind}_min": lo, f"{kind}_max": hi,
                        f"{kind}_spread": (hi - lo) / med if med > 0 else math.nan})
        fractions = [v for v in map(number, g.ceiling_fraction) if math.isfinite(v)]
        row["ceiling_fraction"] = statistics.median(fractions) if fractions else math.nan
        out.append(row)
    return pd.DataFrame(out)


def flag(row) -> str:
    """Why a case's throughput should not be compared, in words ("" when it can)."""
    noisy = [k for k in ("train", "infer") if number(row.get(f"{k}_spread")) > SPREAD_FLAG]
    notes = []
    if noisy:
        spread = max(row[f"{k}_spread"] for k in noisy)
        notes.append(f"noisy: {' and '.join(noisy)} timings spread {spread:.0%} of the median")
    if number(row.get("ceiling_fraction")) > 1:
        notes.append(f"ceiling error: {row['ceiling_fraction']:.2f}× the measured matmul ceiling (the ceiling is "
                     "too low, e.g. measured in another math mode)")
    return "; ".join(notes)


def rate_text(row, kind: str) -> str:
    med = number(row.get(f"{kind}_median"))
    if not math.isfinite(med):
        return "-"
    return f"{med:,.0f} ({row[f'{kind}_min']:,.0f}–{row[f'{kind}_max']:,.0f})"


def ceiling_text(fraction: float, amp=None) -> str:
    """The fraction of the ceiling, naming its dtype (the records' amp: the ceiling is the dtype's)."""
    if not math.isfinite(number(fraction)):
        return "-"
    dtypes = sorted({a for a in (amp if amp is not None else ()) if isinstance(a, str) and a in ("bfloat16", "float32")})
    return (f"error ({fraction:.2f})" if fraction > 1 else f"{fraction:.0%}") + (f" of {'/'.join(dtypes)}" if dtypes else "")
