"""Run records: one JSON file per cell under <results>/runs/, named by a hash of the cell's
complete configuration; tables aggregated from them with pandas.

Every write is atomic (temporary file in the same folder, fsync, rename), so a reader sees either
the old file or the new one, never half of one; files are created readable as the umask allows
(like any file the user writes), not 0600. Each record carries a SHA-256 checksum of its content;
a record that fails it is set aside when its cell is about to run (renamed
<cell>.json.<time>-<random>.corrupt, one line says so) and the cell runs again. Reading commands
(report, collect) only skip it, with one line, and rename nothing.

A valid checksum proves only that the file was written by `write_record`, not that it is the
cell's: a record is trusted only when its stored id equals its file name, its stored configuration
hashes to that id (a record copied under another cell's name, or edited and checksummed again, is
neither) and it has the fields and types its readers use (SCHEMA). Otherwise it is treated like a
corrupt one.

A record's "provenance" (outside the hash) says how it was made: the profile, the options the user
gave, the data source, whether it resumed, attempts and wall time over all attempts, the package
version and commit. Read it with `provenance(record)`.

A record names the table rows it is ("cases": `memberships`, with a "schema" version, SCHEMA_VERSION):
the rows the tables and the report place it in. Every path inside the results folder is named
once, by `Results`; cell locks live in <results>/.locks/ (one <cell>.lock per cell that ran), out of runs/.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .notices import notice


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def atomic_write(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: colleagues on a shared file system read results
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_aside(path: str | os.PathLike, what: str, why: str = "corrupt (checksum fails)") -> Path:
    """Rename a damaged file to a name of its own (<name>.<time>-<random>.corrupt: a later damaged
    copy never overwrites it) and say so in one line."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}.corrupt")
    os.replace(path, aside)
    notice(f"{path} is {why}: set aside as {aside.name}; {what}")
    return aside


# What the readers of a record (tables, status, tuning, the report) rely on: key -> type, or a dict
# of the same for a nested object. A key with a leading "?" may be absent or null (a spec field
# added since a record was written: the report fills in its default).
NUMBER = (int, float)
# 2: "cases", the table rows a record is (memberships); 1 (no "schema"): written before.
SCHEMA_VERSION = 2
SCHEMA = {
    "cell_id": str, "status": str, "?schema": int, "?cases": list,
    "config": {"seed": int, "device": str,
               "model": {"config": str, "batch_norm": bool, "kernels": str, "init": str, "head": str,
                         "width": NUMBER, "?num_classes": int, "?image_size": int},
               "train": {"optimizer": str, "epochs": int, "?batch_size": int, "?schedule": str,
                         "?weight_decay": NUMBER, "?augment": bool, "?lr": NUMBER, "?scale": list},
               "data": {"dataset": str, "?image_size": int}},
    "?lr": NUMBER, "?params": int, "?trainable_params": int, "?gmacs": NUMBER, "?gflops": NUMBER,
    "?wall_s": NUMBER, "?created": str, "?versions": dict, "?start": dict,
    "?dataset": {"?sizes": dict, "?classes": int, "?source": str},
    "?provenance": {"?profile": str, "?overrides": dict, "?attempts": int, "?wall_s_total": NUMBER},
    "?throughput": {"?train": dict, "?infer": dict, "?train_gflop_per_s": NUMBER, "?ceiling_fraction": NUMBER},
    "?tuning": {"?grid": list, "?chosen_lr": NUMBER, "?cells": list},
    "?error": {"?type": str, "?message": str, "?traceback": str},
    "?result": {"?epochs_run": int, "?best_val_top1": NUMBER, "?history": list, "?evaluation": dict,
                "?test": {"?top1": NUMBER, "?top5": NUMBER, "?loss": NUMBER}},
}


def schema_errors(value, schema=SCHEMA, where: str = "") -> list[str]:
    """How `value` departs from `schema` (SCHEMA's form), e.g. ["config.train missing",
    "params is str, not int"]; empty if it conforms."""
    if not isinstance(schema, dict):
        types = schema if isinstance(schema, tuple) else (schema,)
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            return []
        return [f"{where} is {type(value).__name__}, not {' or '.join(t.__name__ for t in types)}"]
    if not isinstance(value, dict):
        return [f"{where or 'the record'} is {type(value).__name__}, not an object"]
    out = []
    for key, sub in schema.items():
        name, optional = key.lstrip("?"), key.startswith("?")
        path = f"{where}.{name}" if where else name
        if value.get(name) is None:
            if not optional:
                out.append(f"{path} missing")
            continue
        out += schema_errors(value[name], sub, path)
    return out


def mismatch(path: str | os.PathLike, record: dict) -> str | None:
    """Why a checksummed record at `path` is not the record of the cell its file name says, in
    words (malformed, another cell's, or edited); None if it is."""
    if isinstance(record, dict) and isinstance(record.get("schema"), int) and record["schema"] > SCHEMA_VERSION:
        return (f"written by a newer vggbench (record schema {record['schema']}, this one reads up to "
                f"{SCHEMA_VERSION}): update vggbench to read it")
    errors = schema_errors(record)
    if errors:
        return f"malformed ({'; '.join(errors[:3])})"
    name = Path(path).name.removesuffix(".json")
    if record["cell_id"] != name:
        return f"not this cell's record (it holds cell {record['cell_id']}'s)"
    if digest(record["config"])[:16] != name:
        return "not this cell's record (its configuration does not hash to its name: edited)"
    return None


def write_record(path: str | os.PathLike, record: dict) -> dict:
    record = {k: v for k, v in record.items() if k != "checksum"}
    record["checksum"] = digest(record)
    atomic_write(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    return record


def read_record(path: str | os.PathLike, set_aside_corrupt: bool = False, check: bool = True) -> dict | None:
    """The record at path; None if absent, corrupt (bad JSON or checksum) or not the cell's its
    name says (`mismatch`; check=False skips that, for JSON files written by write_record that are
    not cell records): never trusted. With set_aside_corrupt (a cell about to run again) a bad one
    is set aside (`set_aside`); else it is left in place and one line says it was skipped (reading
    commands rename nothing)."""
    path = Path(path)
    why = "corrupt (checksum fails)"
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("checksum") == digest(
                {k: v for k, v in record.items() if k != "checksum"}):
            why = mismatch(path, record) if check else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    if why is None:
        return record
    if not set_aside_corrupt:
        notice(f"{path} is {why}: skipped; running its cell again sets it aside")
        return None
    try:
        set_aside(path, "its cell runs again", why)
    except FileNotFoundError:
        pass
    return None


def memberships(record: dict) -> list[dict] | None:
    """The rows of the ablations' tables a record is: [{"ablation", "case", "tuned"}] (cells.Cell.membership),
    added by every session that ran or reused its cell as a row; [] for a cell that is only needed
    by others (a start net, a tuning rate, the training of an evaluation cell). None for a record
    written before memberships were recorded (schema 1): where it goes is the reader's to say."""
    return record["cases"] if record.get("schema", 1) >= 2 and isinstance(record.get("cases"), list) else None


def with_membership(record: dict, membership: dict | None) -> dict:
    """The record (of the current schema) with `membership` (a row it is, or None) among its rows."""
    rows = memberships(record) or []
    if membership is not None and membership not in rows:
        rows = rows + [membership]
    return {**record, "schema": SCHEMA_VERSION, "cases": rows}


def provenance(record: dict) -> dict:
    """How a record was made (outside its hash): {"profile", "overrides" {option: value as given},
    "data_source" {"dataset", "data_dir", "origin"}, "resumed", "resumed_from_epoch", "attempts",
    "wall_s_total", "version", "commit"}. Records written before provenance existed give
    {"profile": None, ...}: unknown, never guessed."""
    keys = ("profile", "overrides", "data_source", "resumed", "resumed_from_epoch", "attempts", "wall_s_total",
            "version", "commit")
    given = record.get("provenance") or {}
    return {k: given.get(k) for k in keys}


def older_identity(results_dir: str | os.PathLike) -> int:
    """How many records in runs/ were written before cell ids covered the data's content (no data
    fingerprint in their config): their ids are never asked for again, so they are not used."""
    n = 0
    for p in runs_dir(results_dir).glob("*.json"):
        try:
            n += "fingerprint" not in json.loads(p.read_text())["config"]["data"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return n


@dataclass(frozen=True)
class Results:
    """The results folder (--results-dir): every path inside it, named here only."""
    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def runs(self) -> Path:              # one record per cell, <cell id>.json (checkpoints beside them)
        return self.root / "runs"

    def record(self, cell_id: str) -> Path:
        return self.runs / f"{cell_id}.json"

    def lock(self, cell_id: str) -> Path:  # out of runs/: a lock is no result
        return self.root / ".locks" / f"{cell_id}.lock"

    @property
    def weights_dir(self) -> Path:
        return self.root / "weights"

    def weights(self, cell_id: str) -> Path:
        return self.weights_dir / f"{cell_id}.pt"

    def heartbeat(self, cell_id: str) -> Path:  # a running cell's last epoch (progress.py, `vggbench status`)
        return self.root / "progress" / f"{cell_id}.json"

    def curves(self, ablation: str, case: str, seed: int) -> Path:  # TensorBoard event files (curves.py)
        return self.root / "tensorboard" / ablation / f"{case}-s{seed}"

    def table(self, ablation: str) -> Path:  # <ablation>.csv (tables.aggregate)
        return self.root / f"{ablation}.csv"

    @property
    def session(self) -> Path:           # the options and ablations of the last session (tables.py)
        return self.root / "session.json"

    @property
    def selection(self) -> Path:         # the cells the last session selected (status.py)
        return self.root / "selection.json"

    @property
    def jobs(self) -> Path:              # submitit's pickles, logs and sbatch scripts, one folder a job (launch.py)
        return self.root / "submitit" / "%j"

    @property
    def report(self) -> Path:            # `vggbench report`'s default folder
        return self.root / "report"


# Shorthands for the paths most callers want.
def runs_dir(results_dir: str | os.PathLike) -> Path:
    return Results(results_dir).runs


def record_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return Results(results_dir).record(cell_id)


def lock_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return Results(results_dir).lock(cell_id)


def weights_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return Results(results_dir).weights(cell_id)


# ------------------------------------------------------------------------------ tables

COLUMNS = ["ablation", "case", "seed", "config", "batch_norm", "kernels", "init", "init_std", "head", "width",
           "optimizer", "transfer", "scale", "start", "lr", "tuned", "epochs", "epochs_run", "status", "params", "trainable_params", "gmacs", "gflops",
           "train_images_per_s", "infer_images_per_s", "train_gflop_per_s", "ceiling_fraction",
           "best_val_top1", "test_top1", "test_top5", "test_loss", "wall_s", "device", "amp", "torch", "cuda", "dataset", "classes", "profile",
           "attempts", "cell_id"]


def tuned(tuning: dict | None) -> bool:
    """Whether a rate was chosen by tuning, from what the tuning found (a record's "tuning",
    tuning.resolve's): not when no rate of the grid trained."""
    return (tuning or {}).get("chosen_lr") is not None


def readings(history: list[dict]) -> dict:
    """The pitfalls ablation's readings of one run, from its per-epoch history (TrainSpec.readings):
    the test top-1 at the epoch chosen on val (the protocol: the highest val top-1, the first such
    epoch), the best test top-1 over the epochs (the epoch chosen on test: a write-up's mistake), and
    at the last epoch, the held-out val top-1 beside the top-1 on training images ("validation" on
    the training set). {} for a run without them (every other cell)."""
    rows = [h for h in history if "test_top1" in h and "val_top1" in h]
    if not rows:
        return {}
    at_val = max(rows, key=lambda h: h["val_top1"])  # max keeps the first of equal values: no peeking ahead
    at_test = max(rows, key=lambda h: h["test_top1"])
    last = rows[-1]
    return {"test_at_val_epoch_top1": at_val["test_top1"], "val_epoch": at_val["epoch"],
            "best_test_top1": at_test["test_top1"], "test_epoch": at_test["epoch"],
            "last_val_top1": last["val_top1"], "last_train_eval_top1": last.get("train_eval_top1")}


def flatten(record: dict, row: dict) -> dict:
    """One table row of a record as the row `row` of an ablation's table ({"ablation", "case",
    "tuned"}: one of its memberships, or cells.Cell.membership of the cell that read it)."""
    cfg, res = record["config"], record.get("result", {})
    m, t = cfg["model"], cfg["train"]
    test = res.get("test", {})
    thr = record.get("throughput", {})
    return {
        "ablation": row["ablation"], "case": row["case"], "seed": cfg["seed"], "config": m["config"],
        "batch_norm": m["batch_norm"], "kernels": m["kernels"], "init": m["init"], "head": m["head"],
        "width": m["width"], "optimizer": t["optimizer"], "transfer": t.get("transfer", "scratch"),
        "lr": record.get("lr"), "tuned": bool(row["tuned"]), "epochs": t["epochs"], "epochs_run": res.get("epochs_run"),
        "status": record.get("status"), "params": record.get("params"),
        "trainable_params": record.get("trainable_params"), "gmacs": record.get("gmacs"), "gflops": record.get("gflops"),
        "train_images_per_s": thr.get("train", {}).get("images_per_s"),
        "infer_images_per_s": thr.get("infer", {}).get("images_per_s"),
        "train_gflop_per_s": thr.get("train_gflop_per_s"), "ceiling_fraction": thr.get("ceiling_fraction"),
        "best_val_top1": res.get("best_val_top1"), "test_top1": test.get("top1"), "test_top5": test.get("top5"),
        "test_loss": test.get("loss"), "wall_s": record.get("wall_s"), "device": record.get("device"),
        "amp": record.get("amp", t.get("amp")),  # the dtype that ran (older records: the option as given)
        "init_std": record.get("init_std"), "scale": "-".join(map(str, t["scale"])) if t.get("scale") else None,
        "start": (record.get("start") or {}).get("cell_id"),
        # section 3.2's test-time methods (evaluation cells): a top-1 and a top-5 column per method
        **{f"eval_{method}_{k}": v[k] for method, v in res.get("evaluation", {}).items() for k in ("top1", "top5")},
        **readings(res.get("history", [])),  # the pitfalls ablation's columns (its cells only)
        "torch": record.get("versions", {}).get("torch"), "cuda": record.get("versions", {}).get("cuda"),
        "dataset": cfg["data"]["dataset"], "profile": provenance(record)["profile"],
        "classes": ",".join(cfg["data"]["classes"]) if cfg["data"].get("classes") else None,  # --classes
        "attempts": provenance(record)["attempts"], "cell_id": record.get("cell_id"),
    }


def table(rows: list[dict], columns: list[str] = COLUMNS) -> pd.DataFrame:
    """The rows in `columns`' order, then any other columns they have (evaluation: eval_<method>_top1/top5;
    the pitfalls ablation's readings)."""
    extra = sorted({k for row in rows for k in row if k not in columns})
    return pd.DataFrame(rows, columns=columns + extra)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    atomic_write(path, df.to_csv(index=False))
