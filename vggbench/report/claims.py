"""The claims of the paper and later work (vggbench/references.json), each judged from our seeds
with vggbench.stats: the effect treatment − control with its 95% interval and a verdict. A claim
none of whose two sides has records is "not run"; one whose premise failed (a side's nets start from
another cell's trained net, e.g. D from a trained A, and that net did not train) "cannot be judged",
with the reason; a verdict of a setting whose budget is not adequate (budget.py) is shown as "not
evidence"."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import stats
from ..statuses import Status
from .blocks import Block, heading, image_block, paragraph, table_block
from .budget import Budget
from .plots import claims_figure, save_figure
from .references import load_references, same_scale
from .settings import Setting
from .text import number, status_counts
from .verdicts import CANNOT_JUDGE, NOT_EVIDENCE, NOT_RUN, VERDICTS

METRICS = {"test_top1": "test top-1 accuracy (points)", "params_m": "parameters (millions)",
           "eval_single_scale_top1": "single-scale dense test top-1 (points)",
           "eval_multi_scale_top1": "multi-scale dense test top-1 (points)",
           "eval_multi_crop_top1": "multi-crop test top-1 (points)",
           "eval_dense_multi_crop_top1": "dense + multi-crop test top-1 (points)",
           # the pitfalls ablation's readings of one run's per-epoch history (records.readings)
           "best_test_top1": "test top-1 at the epoch chosen on test (points)",
           "test_at_val_epoch_top1": "test top-1 at the epoch chosen on val (points)",
           "last_train_eval_top1": "top-1 on training images, last epoch (points)",
           "last_val_top1": "held-out val top-1, last epoch (points)"}
# How a claim's two sides are named where one case is read two ways (default: the metric's name
# before " test").
SHORT = {"best_test_top1": "epoch chosen on test", "test_at_val_epoch_top1": "epoch chosen on val",
         "last_train_eval_top1": "'validation' on train", "last_val_top1": "held-out val"}


def _claim_values(s: Setting, ablation: str, case: str, metric: str) -> dict[int, float]:
    df = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    out = {}
    if metric not in df:
        return out  # an evaluation column no record of this setting has
    for row in df.itertuples(index=False):
        if metric.endswith("_top1"):
            v = number(getattr(row, metric))
            if math.isnan(v) and row.status == Status.DIVERGED:
                v = 100.0 / row.num_classes  # a diverged net predicts nothing: chance accuracy
        else:
            v = number(getattr(row, metric))
        out[int(row.seed)] = v
    return out


def comparison(c: dict) -> str:
    """How a claim's two sides are named: two cases, or two test methods of one case."""
    if "control_metric" not in c:
        return f"{c['treatment']} − {c['control']}"
    name = {m: SHORT.get(m) or METRICS.get(m, m).split(" test")[0] for m in (c["metric"], c["control_metric"])}
    return f"{c['treatment']}: {name[c['metric']]} − {name[c['control_metric']]}"


def _case_status(s: Setting, ablation: str, case: str) -> str:
    return status_counts(s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)].status)


# A start net with one of these statuses did not train: a net started from it tests something else.
DID_NOT_TRAIN = (Status.STALLED, Status.DIVERGED, Status.ERROR)


def failed_starts(s: Setting, ablation: str, case: str) -> dict[tuple[str, str], list[int]]:
    """(start case, its status) -> seeds, for the records of a case whose nets start from another
    cell's trained net (warmstart.py) that did not train. The status is the one the record kept when
    the net started (run.execute's "start"); an error record (its start failed) names the start cell
    in its configuration only: that cell's own record says how it ended."""
    out: dict[tuple[str, str], list[int]] = {}
    for row in s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)].itertuples(index=False):
        record = s.by_id.get(row.cell_id) or {}
        start = record.get("start") or s.by_id.get((record.get("config", {}).get("start") or {}).get("cell"))
        if start and start.get("status") in DID_NOT_TRAIN:
            out.setdefault((start.get("case") or "its start net", start["status"]), []).append(int(row.seed))
    return out


def _premise(s: Setting, c: dict) -> tuple[str, str] | None:
    """(shown, why) of a claim that cannot be judged because a side's start net did not train, or None."""
    failed = {}
    for side in dict.fromkeys((c["treatment"], c["control"])):
        for (start, status), seeds in failed_starts(s, c["ablation"], side).items():
            failed.setdefault(start, []).append(f"{side} starts from {start}, which {status} "
                                                f"(seed{'s' * (len(seeds) != 1)} {', '.join(map(str, sorted(seeds)))})")
    if not failed:
        return None
    names = " and ".join(failed)
    return (f"{CANNOT_JUDGE}: {names} did not train",
            "; ".join(w for ws in failed.values() for w in ws) + ": the claim's premise failed")


def judge_claims(s: Setting, claims: list[dict], budget: Budget | None = None) -> pd.DataFrame:
    """One row per claim: our effect with its interval, the verdict (vggbench.stats, "not run" or
    "cannot be judged"), and `shown`: the verdict as the report shows it under the setting's budget."""
    sources = load_references()["sources"]
    rows = []
    for c in claims:
        # Two methods on the same nets (e.g. multi- vs single-scale test): "control_metric" names the
        # control's column; the seeds pair the very same trained nets.
        t = _claim_values(s, c["ablation"], c["treatment"], c["metric"])
        k = _claim_values(s, c["ablation"], c["control"], c.get("control_metric", c["metric"]))
        iv = stats.effect(t, k, exact=bool(c.get("exact")))
        v, why = stats.verdict(iv, c["expect"], c.get("margin", 0.0))
        if not t or not k:
            missing = " and ".join(x for x, vals in ((c["treatment"], t), (c["control"], k)) if not vals)
            v, why = NOT_RUN, f"no records of {missing}"
        shown = v if v == NOT_RUN or budget is None or budget.adequate else f"{v} ({NOT_EVIDENCE})"
        if v != NOT_RUN and (premise := _premise(s, c)) is not None:
            v, (shown, why) = CANNOT_JUDGE, premise
        ref = c.get("reference_effect")
        rows.append({"id": c["id"], "claim": c["claim"], "reference": c["reference"], "source": c["source"],
                     "comparison": comparison(c), "metric": c["metric"],
                     "expect": c["expect"] + (f" (margin {c['margin']:g})" if "margin" in c else ""),
                     "effect": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n, "method": iv.method,
                     "reference_effect": ref if same_scale(s, sources[c["source"]]) else None,
                     "reference_dataset": sources[c["source"]].get("dataset"),
                     "verdict": v, "shown": shown, "why": why,
                     "protocol": _protocol(s, c["ablation"], (c["treatment"], c["control"])),
                     "runs": f"{_case_status(s, c['ablation'], c['treatment'])} / "
                             f"{_case_status(s, c['ablation'], c['control'])}"})
    return pd.DataFrame(rows)


def _protocol(s: Setting, ablation: str, cases) -> str:
    """"tuned" when every run of both sides had its learning rate tuned (tuning.py), else "at fixed
    defaults": a comparison of methods at untuned rates says as much about the rates."""
    df = s.rows[(s.rows.ablation == ablation) & s.rows.case.isin(cases)]
    if set(df.case) != set(cases):
        return "-"  # not run
    return "tuned" if df.tuned.fillna(False).astype(bool).all() else "at fixed defaults"


def verdict_counts(judged: pd.DataFrame) -> dict[str, int]:
    counts = judged.verdict.value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def effect_text(r) -> str:
    """A judged claim's effect with its 95% interval, as the tables write it."""
    if not math.isfinite(r.effect):
        return "n/a"
    if r.metric == "params_m" and math.isfinite(r.low):
        return f"{r.effect:+.3f} (exact)"
    if not math.isfinite(r.low):
        return f"{r.effect:+.2f} (no CI)"
    return f"{r.effect:+.2f} [{r.low:+.2f}, {r.high:+.2f}]"


def section_claims(s: Setting, judged: pd.DataFrame, budget: Budget, figdir: Path) -> list[Block]:
    refs = load_references()["sources"]
    table = pd.DataFrame({
        "claim": judged.claim,
        "reference (source)": [f"{r.reference} ({refs[r.source]['short']})" for r in judged.itertuples()],
        "comparison": judged.comparison, "metric": judged.metric.map(METRICS), "expected": judged.expect,
        "measured effect [95% CI]": [effect_text(r) for r in judged.itertuples()],
        "interval": [r.method if r.verdict != NOT_RUN else "-" for r in judged.itertuples()],
        "runs (treatment / control)": judged.runs, "learning rates": judged.protocol, "verdict": judged.shown,
        "why": judged.why})
    counts = verdict_counts(judged)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    note = "" if budget.adequate else f" The budget is not adequate ({budget.reason}): no verdict here is evidence."
    blocks = [heading(3, f"Claims (setting {s.index})"),
              paragraph(f"{len(judged)} claims: {summary}.{note} Effects are treatment − control per seed; intervals "
                        "are paired t intervals over the seeds both variants share (Welch's t when they share none), "
                        "95%; with 2 seeds the t interval has 1 degree of freedom (×12.7 the standard error). "
                        "Diverged "
                        "runs count at chance accuracy. A claim whose nets start from another cell's trained net "
                        "that did not train (D from a net A that stalled) *cannot be judged*: its premise failed. *not_greater* claims (\"no better than\") use a practical "
                        "margin. Reference figures and their sources are in `vggbench/references.json`."),
              table_block(table, f"claims judged on setting {s.index}")]
    fig = claims_figure(judged, f"Setting {s.index}: {s.short_caption}", budget.adequate)
    path = save_figure(fig, figdir / f"s{s.index}-claims.png")
    return blocks + [image_block(path, f"effects with 95% CIs, one row per claim (setting {s.index})")]
