"""Aggregation of run records into tables: <results>/<ablation>.csv.

One implementation for the end of a pytest session (conftest.py) and for `vggbench collect` (after
`pytest ablations --launcher slurm --no-wait`, or any time). A session saves the options it ran
with in <results>/session.json, so that `vggbench collect` rebuilds the same grids.

Only complete records are read: <results>/runs/<cell>.json, found by the cell ids of the grid. A
writer's temporary file (.<cell>.json.*.tmp, half-written, or left by a killed process) is never
looked at, and a record that fails its checksum is set aside (records.read_record). Error records
are rows with status "error".
"""
from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import records, tuning
from .cells import cells_for
from .data.sources import writable
from .options import Options
from .records import Results
from .errors import UsageError
from .grid import ABLATIONS

SESSION_FILE = Results(".").session.name


def check_results_dir(results_dir: str | os.PathLike) -> Path:
    """The results folder if one can write there (it need not exist yet), else ValueError saying
    what to do. Writes nothing."""
    return check_writable(results_dir, "results dir", "choose another --results-dir or make it writable")


def check_writable(folder: str | os.PathLike, what: str, advice: str) -> Path:
    """`folder` if one can write there (it need not exist yet), else ValueError: `what`, the folder
    that stops it, and `advice`. Writes nothing."""
    path = Path(folder).expanduser()
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is a file, not a folder; {advice}")
    if not writable(existing):
        raise UsageError(f"{what} {path}: {existing} is read-only; {advice}")
    return path


def aggregate(results_dir: str | os.PathLike, ablations, opts: Options) -> dict[str, pd.DataFrame]:
    """Write <results>/<ablation>.csv for each ablation: every cell of its grid (under opts) that
    has a valid record, whichever session or job wrote it. Returns the tables."""
    results_dir = Path(results_dir)
    tables = {}
    for name in sorted(ablations):
        rows = []
        for cell in cells_for(name, opts):
            cell = tuning.resolve(cell, results_dir)  # a tuned case: its record is at the rate chosen
            rec = records.read_record(records.record_path(results_dir, cell.id)) if cell is not None else None
            if rec is not None:  # the row as the cell is one (the run wrote the same into the record)
                rows.append(records.flatten(rec, cell.membership()))
        df = records.table(rows)
        records.write_table(df, Results(results_dir).table(name))
        tables[name] = df
    return tables


def save_session(results_dir: str | os.PathLike, opts: Options, ablations) -> None:
    """Remember the options and ablations of a session (ablations accumulate while the options stay)."""
    path = Results(results_dir).session
    names = set(ablations)
    try:
        before = json.loads(path.read_text())
        if before.get("options") == dataclasses.asdict(opts):
            names |= set(before.get("ablations", []))
    except (OSError, ValueError, AttributeError):
        pass
    records.atomic_write(path, json.dumps({
        "options": dataclasses.asdict(opts), "ablations": sorted(names),
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1) + "\n")


def load_session(results_dir: str | os.PathLike) -> tuple[Options, list[str]]:
    results_dir = check_results_dir(results_dir)
    path = Results(results_dir).session
    hint = f"run `pytest ablations --results-dir {results_dir}` first"
    try:
        saved = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(Options)}
        # JSON keeps tuples (--classes, --tune-grid) as lists: back to tuples, hashable as the specs need
        opts = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["options"].items() if k in fields})
        names = [n for n in saved["ablations"] if n in ABLATIONS]
    except FileNotFoundError:
        raise UsageError(f"no session in {results_dir} (no {SESSION_FILE}): {hint}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"{path} is not readable ({type(err).__name__}): {hint} to write it again") from None
    return opts, names


def collect(results_dir: str | os.PathLike, ablations=None) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The tables of the last session's grids (or of the ablations given), and each grid's size."""
    opts, names = load_session(results_dir)
    names = list(ablations or names)
    return aggregate(results_dir, names, opts), {n: len(cells_for(n, opts)) for n in names}
