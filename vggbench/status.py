"""`vggbench status`: what a session's cells are doing, read from the results folder alone.

A session writes <results>/selection.json (its selected cells and its start) when collection ends;
without one (a session from before it existed) the grids of <results>/session.json are shown.
The state of each cell comes from the files its writer keeps up to date:

  done         a record (runs/<cell>.json) with status ok / diverged / stalled, written this session
  reused       the same, written before the session started (the session did not recompute it)
  failed       an error record: its error's first line
  running      the cell's lock (.locks/<cell>.lock) is held: the epoch from its heartbeat
               (progress/<cell>.json, rewritten after every epoch by vggbench.progress) and how
               long ago it or the checkpoint was written
  interrupted  not running, with a checkpoint or a heartbeat: its process ended without a record
  tuning       (--tune lr) some of its tuning cells have records, none runs: its id is known once all have
  not started  none of these

A tuned cell is shown as its final cell once its tuning cells have records (tuning.final_id); while
it tunes, as the tuning cell that runs, with how many of its rates are done.

For jobs of `--launcher local|slurm` the submitit job of each cell (<results>/submitit/) and its
state: Slurm's (sacct) where it can be asked, else whether the job left its result.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from . import records, tuning
from .cells import cells_for
from .notices import notice
from .errors import UsageError
from .progress import heartbeat_path, now, outcome
from .records import Results
from .tables import load_session
from .statuses import Status

SELECTION_FILE = Results(".").selection.name
COLUMNS = ["ablation", "case", "seed", "state", "epoch", "detail", "last_write", "job", "cell_id"]


def save_selection(results_dir: str | os.PathLike, cells) -> None:
    """Remember the cells a session selected (in collection order) and when it started. Only
    `vggbench status` reads it: a write that fails (a full disk) is said in one line, not raised."""
    unique = {c.id: c for c in cells}
    try:
        records.atomic_write(Results(results_dir).selection, json.dumps({
            "started": now(), "cells": [_selected(c) for c in unique.values()]}, indent=1) + "\n")
    except OSError as err:
        notice(f"{SELECTION_FILE} not written ({type(err).__name__}: {err}); `vggbench status` will not list "
               "this session's cells")


def _selected(cell) -> dict:
    """A cell as selection.json keeps it; a tuned one with its plan (its id is known once tuned)."""
    return {"cell_id": cell.id, "ablation": cell.ablation, "case": cell.case, "seed": cell.seed,
            "epochs": cell.train.epochs, **({"tuning": tuning.plan(cell)} if cell.tune else {})}


def selected_cells(results_dir: str | os.PathLike) -> tuple[list[dict], str | None]:
    """The last session's cells as dicts (cell_id, ablation, case, seed, epochs) and its start time."""
    path = Results(results_dir).selection
    try:
        saved = json.loads(path.read_text())
        cells = [{**{k: c[k] for k in ("cell_id", "ablation", "case", "seed", "epochs")},
                  **({"tuning": c["tuning"]} if "tuning" in c else {})} for c in saved["cells"]]
        return cells, saved.get("started")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path} is not readable ({type(err).__name__}): run the session again to rewrite it") from None
    opts, names = load_session(results_dir)  # raises ValueError with what to do
    return [_selected(c) for n in names for c in cells_for(n, opts)], None


def lock_held(results_dir: str | os.PathLike, cell_id: str) -> bool:
    """Whether another process holds the cell's lock (run.run_cell holds it while the cell runs)."""
    lock_file = records.lock_path(results_dir, cell_id)
    if not lock_file.exists():
        return False
    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s ago" if seconds >= 60 else f"{seconds}s ago"


def cell_state(results_dir: str | os.PathLike, cell: dict, started: str | None) -> dict:
    """One row of the status table. A tuned cell (--tune lr) is its final cell once its tuning cells
    have records; before, its tuning: the one running (or interrupted) and how many rates are done."""
    if "tuning" in cell:
        final = tuning.final_id(cell["tuning"], results_dir)
        if final is not None:
            return _cell_state(results_dir, {**cell, "cell_id": final}, started)
        rows = [(lr, _cell_state(results_dir, {**cell, "cell_id": cell_id}, started))
                for lr, cell_id in cell["tuning"]["tuning"]]
        done = sum(r["state"] in ("done", "reused", "failed") for _, r in rows)
        idle = {**_cell_state(results_dir, cell, started), "state": "tuning" if done else "not started"}
        lr, row = next(((lr, r) for lr, r in rows if r["state"] in ("running", "interrupted")), (None, idle))
        said = f"tuning: {done} of {len(rows)} rates done" + (f"; lr {lr:g}: {row['detail']}" if lr is not None else "")
        return {**row, "cell_id": cell["cell_id"], "detail": said.rstrip(": ")}
    return _cell_state(results_dir, cell, started)


def _cell_state(results_dir: str | os.PathLike, cell: dict, started: str | None) -> dict:
    row = {**{k: cell[k] for k in ("ablation", "case", "seed", "cell_id")}, "epoch": "", "detail": "",
           "last_write": "", "job": ""}
    rec = records.read_record(records.record_path(results_dir, cell["cell_id"]))
    if rec is not None:
        if rec.get("status") == Status.ERROR:
            return {**row, "state": "failed", "detail": outcome(rec)[:120]}
        row["epoch"] = f"{rec.get('result', {}).get('epochs_run', '?')}/{cell['epochs']}"
        reused = started is not None and rec.get("created", "") < started
        return {**row, "state": "reused" if reused else "done", "detail": outcome(rec)}
    ckpts = list(records.runs_dir(results_dir).glob(f"{cell['cell_id']}*.ckpt"))
    beat_file = heartbeat_path(results_dir, cell["cell_id"])
    try:
        beat = json.loads(beat_file.read_text())
    except (OSError, ValueError):
        beat = None
    written = [p.stat().st_mtime for p in [*ckpts, beat_file] if p.exists()]
    if written:
        row["last_write"] = _age(time.time() - max(written))
    if beat is not None:
        row["epoch"] = f"{beat['epoch']}/{beat.get('epochs', cell['epochs'])}"
        row["detail"] = ", ".join(s for s in (
            f"train loss {beat['train_loss']:.4g}" if "train_loss" in beat else "",
            f"val top-1 {beat['val_top1']:.1f}%" if "val_top1" in beat else "",
            f"{beat['images_per_s']:.0f} img/s" if "images_per_s" in beat else "",
            f"on {beat.get('host')} pid {beat.get('pid')}") if s)
    if lock_held(results_dir, cell["cell_id"]):
        return {**row, "state": "running", "epoch": row["epoch"] or f"0/{cell['epochs']}"}
    if ckpts or beat is not None:  # its process ended without a record: killed, or pre-empted
        then = "resumes from its checkpoint on the next run" if ckpts else "starts over on the next run"
        return {**row, "state": "interrupted", "detail": f"{row['detail']}; {then}" if row["detail"] else then}
    return {**row, "state": "not started"}


def submitit_jobs(results_dir: str | os.PathLike) -> dict[str, str]:
    """cell id -> "job <id> <state>" for the jobs in <results>/submitit (the latest job per cell)."""
    out: dict[str, tuple[float, str]] = {}
    sacct = shutil.which("sacct") is not None
    for sub in Path(results_dir, "submitit").glob("*/*_submitted.pkl"):
        job_id = sub.name.removesuffix("_submitted.pkl")
        try:
            with sub.open("rb") as f:
                delayed = pickle.load(f)
            cell_id = delayed.function.cell_id
        except Exception:  # not one of our jobs, or written by another version: not shown
            continue
        state = _job_state(sub.parent, job_id, sacct)
        mtime = sub.stat().st_mtime
        if cell_id not in out or mtime > out[cell_id][0]:
            out[cell_id] = (mtime, f"{job_id} {state}")
    return {k: v for k, (_, v) in out.items()}


def _job_state(folder: Path, job_id: str, sacct: bool) -> str:
    if sacct:
        try:
            from submitit.slurm.slurm import SlurmJob

            return SlurmJob(folder, job_id).state
        except Exception:  # sacct knows nothing (a local job, or the cluster forgot it)
            pass
    result = folder / f"{job_id}_0_result.pkl"
    if not result.exists():
        return "no result yet"
    try:
        with result.open("rb") as f:
            outcome, _ = pickle.load(f)
    except Exception:
        return "result unreadable"
    return "COMPLETED" if outcome == "success" else "FAILED"


def status(results_dir: str | os.PathLike) -> pd.DataFrame:
    """The status table of the last session's cells (COLUMNS), in its order."""
    cells, started = selected_cells(results_dir)
    jobs = submitit_jobs(results_dir)
    rows = [{**cell_state(results_dir, c, started), "job": jobs.get(c["cell_id"], "")} for c in cells]
    return pd.DataFrame(rows, columns=COLUMNS)


def render(df: pd.DataFrame, results_dir) -> str:
    """The table as text, empty columns left out, and a one-line count per state."""
    shown = df[[c for c in COLUMNS if c in ("ablation", "case", "seed", "state") or (df[c] != "").any()]]
    counts = df["state"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("done", "reused", "running", "tuning", "interrupted", "failed",
                                                      "not started") if s in counts)
    left = {c: (lambda w: lambda v: f"{v:<{w}}")(int(shown[c].astype(str).str.len().max())) for c in shown
            if c != "seed"}  # text reads left-aligned
    table = shown.to_string(index=False, formatters=left, justify="left") if len(df) else "(no cells)"
    return f"{table}\n{len(df)} cells in {results_dir}: {summary}"
