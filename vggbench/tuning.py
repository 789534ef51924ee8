"""Learning-rate tuning before a comparison: each case at its own best rate, chosen on validation.

Why: an optimiser (or a depth) compared at one fixed "sensible" learning rate measures the rate as
much as the method. Wilson et al. (2017, "The Marginal Value of Adaptive Gradient Methods") tuned
each method's step size on a grid before comparing; DeepOBS (Schneider et al., ICLR 2019) and
Sivaprasad et al. (ICML 2020, "Optimizer Benchmarking Needs to Account for Hyperparameter Tuning")
make the tuning part of the protocol. So, with `--tune lr`:

1. per case, a log-spaced grid of rates around the case's own rate (the profile's
   `lr_grid_factors`: five points over two decades), or the user's `--tune-grid`;
2. one *tuning cell* per rate (seed 0, the profile's epochs): an ordinary cell, recorded, reused,
   resumable, computed once under pytest-xdist (run.run_cell's lock);
3. the rate whose run reached the best **validation** top-1 (`choose`: it never sees test metrics;
   a diverged, stalled or failed run is never chosen; a tie goes to the smaller rate);
4. the case's seeds at that rate: the final cells, whose records name their tuning cells.

The final cell's id is that of an untuned cell at the chosen rate (the same configuration gives the
same result), so it is known only once its tuning cells have records: `resolve` works it out from
them, for the run and for the tables alike. Under `--launcher` each final cell's job runs its
tuning cells first (the locks make the seeds of a case share them), then itself.
"""
from __future__ import annotations

import dataclasses
import math
import os

from . import records
from .cells import Cell
from .statuses import USABLE

SELECT_BY = "best_val_top1"
NO_RATE = ("no rate of the tuning grid ({grid}) trained (every one diverged, stalled or failed): trained at "
           "its own rate {lr:g} instead, marked untuned")


def choose(candidates: list[tuple[float, dict]]) -> float | None:
    """The rate to use, from (rate, record) pairs: the best validation top-1 among usable runs;
    a tie goes to the smaller rate. None when no run is usable. Reads `status` and
    result[SELECT_BY] only: a record's test metrics cannot change the choice."""
    usable = [(record["result"][SELECT_BY], -lr, lr) for lr, record in candidates
              if record.get("status") in USABLE and math.isfinite(record.get("result", {}).get(SELECT_BY, math.nan))]
    return max(usable)[2] if usable else None


def plan(cell: Cell) -> dict:
    """A tuned final cell's ids before it is resolved (for `vggbench status`, which has no cells):
    its tuning cells' and, for each rate it may end at (each of the grid, or its own), its own."""
    rates = [*cell.tune, cell.train.lr]
    return {"tuning": [[t.train.lr, t.id] for t in cell.tuning_cells()],
            "final": [[lr, dataclasses.replace(cell, train=cell.train.replace(lr=lr), tune=()).id] for lr in rates]}


def final_id(planned: dict, results_dir: str | os.PathLike) -> str | None:
    """The id a planned final cell has once its tuning cells have records (None before)."""
    candidates = _candidates(planned["tuning"], results_dir)
    if candidates is None:
        return None
    final = dict(map(tuple, planned["final"]))
    chosen = choose([(lr, r) for lr, _, r in candidates])
    return final[chosen if chosen is not None else planned["final"][-1][0]]


def _candidates(tuning: list, results_dir) -> list[tuple[float, str, dict]] | None:
    """(rate, tuning cell id, its record) for each rate; None while one has no record."""
    out = []
    for lr, cell_id in tuning:
        record = records.read_record(records.record_path(results_dir, cell_id))
        if record is None:
            return None
        out.append((lr, cell_id, record))
    return out


def resolve(cell: Cell, results_dir: str | os.PathLike) -> Cell | None:
    """The final cell at its chosen rate (naming its tuning cells), or None while a tuning cell has
    no record. With no usable rate the case keeps its own rate, is marked untuned (chosen_lr None;
    records.tuned) and the record says why."""
    if not cell.tune:
        return cell
    if cell.evaluate:  # evaluated under its own id (its config names the grid), tuned as its training cell was
        trained = resolve(cell.training_cell(), results_dir)
        return None if trained is None else dataclasses.replace(cell, tuning=trained.tuning)
    candidates = _candidates([[t.train.lr, t.id] for t in cell.tuning_cells()], results_dir)
    if candidates is None:
        return None
    chosen = choose([(lr, r) for lr, _, r in candidates])
    info = {"grid": list(cell.tune), "by": SELECT_BY, "chosen_lr": chosen,
            "cells": [{"lr": lr, "cell_id": r["cell_id"], "status": r.get("status"),
                       SELECT_BY: r.get("result", {}).get(SELECT_BY), "wall_s": r.get("wall_s")}
                      for lr, _, r in candidates]}
    if chosen is None:
        info["note"] = NO_RATE.format(grid=", ".join(f"{lr:g}" for lr in cell.tune), lr=cell.train.lr)
    lr = chosen if chosen is not None else cell.train.lr
    return dataclasses.replace(cell, train=cell.train.replace(lr=lr), tune=(), tuning=info)
