"""Statistics of the report: effects between two variants over seeds, 95% confidence intervals and
the verdict on a claim. Pure functions on plain numbers: no records, no pandas, easy to test.

An effect is `treatment - control` of one metric (e.g. test top-1 accuracy in %), one value per
seed on each side.

- Paired by seed where the two variants share at least two seeds: the cells of one seed share
  their data order and initial RNG state, so the per-seed differences remove the seed's own
  luck. The interval is the Student t interval of the mean difference (n - 1 degrees of freedom).
- Otherwise (no common seeds): Welch's t interval for the difference of the two means.
- A deterministic metric (e.g. parameter count, identical for every seed) is "exact": its
  interval is the value itself and one seed is enough.

t intervals are used rather than a bootstrap because seeds are few (2-5): a percentile bootstrap
of 2 values is no wider than their range and would claim far more certainty than the data hold.

A claim's verdict compares the interval with what the claim expects:
  "greater"      treatment beats control: reproduced if the CI lies above 0, contradicted if it
                 lies below 0, inconclusive if it spans 0.
  "less"         the mirror image.
  "not_greater"  treatment is no better than control (by more than `margin`): reproduced if the
                 CI's upper end is below the margin, contradicted if its lower end is above it.
Fewer than `min_n` seeds (or an undefined interval) is always inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from scipy import stats as _st

LEVEL = 0.95
MIN_SEEDS = 2
EXPECTATIONS = ("greater", "less", "not_greater")
VERDICTS = ("reproduced", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; low/high are NaN when undefined (n too small)."""
    estimate: float
    low: float
    high: float
    n: int               # paired: number of seed pairs; unpaired: the smaller side
    method: str          # how the interval was computed, in words
    level: float = LEVEL
    exact: bool = False  # a deterministic quantity: the interval is the value itself

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def spans(self, value: float = 0.0) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        if not math.isfinite(self.estimate):
            return "n/a"
        if not self.defined:
            return f"{self.estimate:+.2f} (no CI)"
        return f"{self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; NaN for one value) and count of the finite values."""
    v = _clean(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else math.nan
    return m, sd, n


def t_interval(values: Iterable[float | None], level: float = LEVEL) -> Interval:
    """Student t interval of the mean of `values` (n - 1 degrees of freedom)."""
    m, sd, n = mean_std(values)
    if n < 2:
        return Interval(m, math.nan, math.nan, n, f"t interval needs 2+ values (n={n})", level)
    half = _st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Interval(m, m - half, m + half, n, f"t interval, n={n}", level)


def welch_interval(treatment: Iterable[float | None], control: Iterable[float | None],
                   level: float = LEVEL) -> Interval:
    """Welch's t interval of mean(treatment) - mean(control) (unequal variances)."""
    m1, s1, n1 = mean_std(treatment)
    m0, s0, n0 = mean_std(control)
    est = m1 - m0
    n = min(n1, n0)
    if n < 2:
        return Interval(est, math.nan, math.nan, n, f"Welch t needs 2+ values per side (n={n1} vs {n0})", level)
    v1, v0 = s1 ** 2 / n1, s0 ** 2 / n0
    se = math.sqrt(v1 + v0)
    if se == 0:
        return Interval(est, est, est, n, f"Welch t, n={n1} vs {n0} (no spread)", level)
    df = (v1 + v0) ** 2 / (v1 ** 2 / (n1 - 1) + v0 ** 2 / (n0 - 1))
    half = _st.t.ppf(0.5 + level / 2, df) * se
    return Interval(est, est - half, est + half, n, f"Welch t, n={n1} vs {n0}", level)


def paired_differences(treatment: Mapping[int, float | None], control: Mapping[int, float | None]
                       ) -> dict[int, float]:
    """treatment[s] - control[s] for every seed s with a finite value on both sides."""
    out = {}
    for seed in sorted(set(treatment) & set(control)):
        t, c = _clean([treatment[seed]]), _clean([control[seed]])
        if t and c:
            out[seed] = t[0] - c[0]
    return out


def effect(treatment: Mapping[int, float | None], control: Mapping[int, float | None],
           level: float = LEVEL, exact: bool = False) -> Interval:
    """The effect treatment - control over seeds (mappings seed -> metric value): paired by seed
    when 2+ seeds are shared, else Welch; `exact` for deterministic metrics (no interval needed)."""
    if exact:
        m1, _, n1 = mean_std(treatment.values())
        m0, _, n0 = mean_std(control.values())
        est = m1 - m0
        return Interval(est, est, est, min(n1, n0), "exact (deterministic, identical for every seed)", level,
                        exact=True)
    diffs = paired_differences(treatment, control)
    if len(diffs) >= 2:
        iv = t_interval(diffs.values(), level)
        return Interval(iv.estimate, iv.low, iv.high, iv.n, f"paired t over {iv.n} seeds", level)
    t, c = _clean(treatment.values()), _clean(control.values())
    if len(t) >= 2 and len(c) >= 2:
        return welch_interval(t, c, level)
    est = (sum(t) / len(t) - sum(c) / len(c)) if t and c else math.nan
    return Interval(est, math.nan, math.nan, min(len(t), len(c)), "too few seeds for an interval", level)


def verdict(interval: Interval, expect: str, margin: float = 0.0, min_n: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, reason) of a claim that expects `expect` of the effect (see the module doc)."""
    if expect not in EXPECTATIONS:
        raise ValueError(f"unknown expectation {expect!r}: choose one of {', '.join(EXPECTATIONS)}")
    if interval.n < (1 if interval.exact else min_n) or not interval.defined:
        return "inconclusive", f"too few seeds (n={interval.n}; a CI needs {min_n}+)"
    lo, hi = interval.low, interval.high
    if expect == "greater":
        if lo > 0:
            return "reproduced", "CI above 0"
        if hi < 0:
            return "contradicted", "CI below 0 (reversed)"
        return "inconclusive", "CI spans 0"
    if expect == "less":
        if hi < 0:
            return "reproduced", "CI below 0"
        if lo > 0:
            return "contradicted", "CI above 0 (reversed)"
        return "inconclusive", "CI spans 0"
    # not_greater: "treatment is no better than control", up to a practical margin
    if hi < margin:
        return "reproduced", f"CI below +{margin:g} (no gain beyond the margin)"
    if lo > margin:
        return "contradicted", f"CI above +{margin:g} (a clear gain)"
    return "inconclusive", f"CI spans +{margin:g}"
