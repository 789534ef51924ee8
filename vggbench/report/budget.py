"""Budget adequacy: did a setting's cells train long enough for a verdict to be evidence?

The one definition the report uses (its summary, its claims table and figure all read `judge`):
a setting is *adequate* when
  1. it ran at least FLAT_EPOCHS + 1 epochs, so the end of a validation curve can be seen;
  2. its validation curves are flat at the end: the median over its completed cells of the val
     top-1 gained per epoch over the last FLAT_EPOCHS epochs is below FLAT_GAIN points;
  3. no cell stalled or diverged, except in an ablation whose display says a stall is its finding
     (grid.Display.stall_is_outcome, e.g. an initialisation that cannot train a deep net), and
     none is "unjudged" (it ran fewer epochs than the trainer's stall window).
Otherwise every verdict of the setting is shown as "not evidence" (grey) with the reason.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd

from ..grid import ABLATIONS
from ..statuses import Status
from ..trainer import STATUS_MEANS
from .settings import Setting

FLAT_EPOCHS = 3      # epochs at the end of a curve that must be flat
FLAT_GAIN = 0.5      # val top-1 points gained per epoch below which a curve counts as flat
DEFINITION = (f"A setting is *adequate* when it ran {FLAT_EPOCHS + 1}+ epochs, its validation top-1 curves gained "
              f"under {FLAT_GAIN:g} points per epoch (median over cells) over the last {FLAT_EPOCHS} epochs, and "
              "no cell stalled, diverged (except where a stall is the ablation's finding) or stayed unjudged "
              f"(fewer epochs than the stall window). A cell *stalled* when {STATUS_MEANS['stalled']}; it "
              f"*diverged* when {STATUS_MEANS['diverged']}. Otherwise its verdicts are *not evidence*.")


@dataclass(frozen=True)
class Budget:
    adequate: bool
    reason: str           # why not, or how it was judged adequate

    @property
    def label(self) -> str:
        return "adequate" if self.adequate else f"not adequate: {self.reason}"


def _failed_cells(s: Setting) -> list[str]:
    """Table rows that count against the budget, as 'ablation:case seed N (status)': stalled or
    diverged ones (unless a stall is the finding of that row's own ablation) and unjudged ones (too
    few epochs to tell). Per row, as the tables show them: one training shared by several ablations
    (depth's D is batchnorm's D-nobn and init's D-paper) counts in each ablation that is not excused."""
    bad = s.rows[s.rows.status.isin((Status.STALLED, Status.DIVERGED, Status.UNJUDGED))]
    return sorted({f"{r.ablation}:{r.case} seed {r.seed} ({r.status})" for r in bad.itertuples()
                   if r.status == Status.UNJUDGED or not (r.ablation in ABLATIONS
                                                     and ABLATIONS[r.ablation].display.stall_is_outcome)})


def end_gain(s: Setting) -> float | None:
    """Median val top-1 points gained per epoch over the last FLAT_EPOCHS epochs of completed cells."""
    c = s.curves
    if c.empty or "val_top1" not in c:
        return None
    gains = []
    for _, g in c[c.status == Status.OK].drop_duplicates(["case", "seed", "epoch"]).groupby(["case", "seed"]):
        v = pd.to_numeric(g.sort_values("epoch").val_top1, errors="coerce").dropna().tolist()
        if len(v) > FLAT_EPOCHS:
            gains.append((v[-1] - v[-1 - FLAT_EPOCHS]) / FLAT_EPOCHS)
    return statistics.median(gains) if gains else None


def judge(s: Setting) -> Budget:
    epochs = int(s.first["config"]["train"]["epochs"])
    reasons = []
    if epochs < FLAT_EPOCHS + 1:
        reasons.append(f"{epochs} epoch{'s' * (epochs != 1)}, too few to see the validation curve flatten "
                       f"(needs {FLAT_EPOCHS + 1}+)")
    else:
        gain = end_gain(s)
        if gain is None:
            reasons.append("no completed cell with a validation curve")
        elif gain >= FLAT_GAIN:
            reasons.append(f"validation top-1 still rising {gain:.1f} points/epoch at the end")
    failed = _failed_cells(s)
    if failed:
        shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        reasons.append(f"{len(failed)} cell{'s' * (len(failed) != 1)} stalled, diverged or unjudged: {shown}")
    if reasons:
        return Budget(False, "; ".join(reasons))
    return Budget(True, f"{epochs} epochs, validation curves flat at the end, no stalled cell")
