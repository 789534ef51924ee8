"""The claims of the paper and later work (vggbench/references.json), each judged from our seeds
with vggbench.stats: the effect treatment − control with its 95% interval and a verdict."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import stats
from .blocks import Block, heading, image_block, paragraph, table_block
from .plots import plot_claims
from .references import load_references
from .settings import Setting
from .text import number, status_counts


METRICS = {"test_top1": "test top-1 accuracy (points)", "params_m": "parameters (millions)"}


def _claim_values(s: Setting, ablation: str, case: str, metric: str) -> dict[int, float]:
    df = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    out = {}
    for row in df.itertuples(index=False):
        if metric == "test_top1":
            v = number(row.test_top1)
            if math.isnan(v) and row.status == "diverged":
                v = 100.0 / row.num_classes  # a diverged net predicts nothing: chance accuracy
        else:
            v = number(getattr(row, metric))
        out[int(row.seed)] = v
    return out


def _case_status(s: Setting, ablation: str, case: str) -> str:
    return status_counts(s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)].status)


def judge_claims(s: Setting, claims: list[dict]) -> pd.DataFrame:
    """One row per claim: our effect with its interval and the verdict (vggbench.stats)."""
    rows = []
    for c in claims:
        t = _claim_values(s, c["ablation"], c["treatment"], c["metric"])
        k = _claim_values(s, c["ablation"], c["control"], c["metric"])
        iv = stats.effect(t, k, exact=bool(c.get("exact")))
        v, why = stats.verdict(iv, c["expect"], c.get("margin", 0.0))
        if not t or not k:
            why = f"no records of {c['treatment'] if not t else c['control']}"
        rows.append({"id": c["id"], "claim": c["claim"], "reference": c["reference"], "source": c["source"],
                     "comparison": f"{c['treatment']} − {c['control']}", "metric": c["metric"],
                     "expect": c["expect"] + (f" (margin {c['margin']:g})" if "margin" in c else ""),
                     "effect": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n, "method": iv.method,
                     "reference_effect": c.get("reference_effect"), "verdict": v, "why": why,
                     "runs": f"{_case_status(s, c['ablation'], c['treatment'])} / "
                             f"{_case_status(s, c['ablation'], c['control'])}"})
    return pd.DataFrame(rows)


def section_claims(s: Setting, claims: list[dict], figdir: Path) -> list[Block]:
    judged = judge_claims(s, claims)
    refs = load_references()["sources"]

    def ci(r) -> str:
        if not math.isfinite(r.effect):
            return "n/a"
        if r.metric == "params_m" and math.isfinite(r.low):
            return f"{r.effect:+.3f} (exact)"
        if not math.isfinite(r.low):
            return f"{r.effect:+.2f} (no CI)"
        return f"{r.effect:+.2f} [{r.low:+.2f}, {r.high:+.2f}]"

    table = pd.DataFrame({
        "claim": judged.claim,
        "reference (source)": [f"{r.reference} ({refs[r.source]['short']})" for r in judged.itertuples()],
        "comparison": judged.comparison, "metric": judged.metric.map(METRICS), "expected": judged.expect,
        "measured effect [95% CI]": [ci(r) for r in judged.itertuples()],
        "interval": judged.method, "runs (treatment / control)": judged.runs, "verdict": judged.verdict,
        "why": judged.why})
    counts = judged.verdict.value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in stats.VERDICTS)
    blocks = [heading(3, "Claims"),
              paragraph(f"{len(judged)} claims: {summary}. Effects are treatment − control per seed; intervals are paired t "
                "intervals over the seeds both variants share (Welch's t when they share none), 95%. Diverged "
                "runs count at chance accuracy. *not_greater* claims (\"no better than\") use a practical margin: "
                "reproduced when the whole interval lies below it. Reference figures and their sources are in "
                "`vggbench/references.json`."),
              table_block(table, f"the paper's claims judged on {s.caption}")]
    p = plot_claims(judged, figdir / f"s{s.index}-claims.png")
    if p:
        blocks.append(image_block(p, f"effects with 95% CIs, coloured by verdict ({s.caption})"))
    return blocks
