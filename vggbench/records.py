"""Run records: one JSON file per cell under <results>/runs/, named by a hash of the cell's
complete configuration; tables aggregated from them with pandas.

Every write is atomic (temporary file in the same folder, fsync, rename), so a reader sees either
the old file or the new one, never half of one. Each record carries a SHA-256 checksum of its
content; a record that fails it is set aside (renamed *.corrupt) and its cell runs again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd


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
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: str | os.PathLike, record: dict) -> dict:
    record = {k: v for k, v in record.items() if k != "checksum"}
    record["checksum"] = digest(record)
    atomic_write(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    return record


def read_record(path: str | os.PathLike) -> dict | None:
    """The record at path; None if absent. A corrupt one (bad JSON or checksum) is renamed
    to *.corrupt and None is returned, so the cell is recomputed rather than trusted."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        ok = isinstance(record, dict) and record.get("checksum") == digest(
            {k: v for k, v in record.items() if k != "checksum"})
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        ok = False
    if not ok:
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except FileNotFoundError:
            pass
        return None
    return record


def runs_dir(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / "runs"


def record_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return runs_dir(results_dir) / f"{cell_id}.json"


def weights_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return Path(results_dir) / "weights" / f"{cell_id}.pt"


# ------------------------------------------------------------------------------ tables

COLUMNS = ["ablation", "case", "seed", "config", "batch_norm", "kernels", "init", "head", "width",
           "optimizer", "lr", "epochs", "epochs_run", "status", "params", "gmacs", "gflops",
           "train_images_per_s", "infer_images_per_s", "train_gflop_per_s", "ceiling_fraction",
           "best_val_top1", "test_top1", "test_top5", "test_loss", "wall_s", "device", "torch", "cuda", "dataset", "cell_id"]


def flatten(record: dict, ablation: str, case: str) -> dict:
    """One table row of a record as seen from one ablation case."""
    cfg, res = record["config"], record.get("result", {})
    m, t = cfg["model"], cfg["train"]
    test = res.get("test", {})
    thr = record.get("throughput", {})
    return {
        "ablation": ablation, "case": case, "seed": cfg["seed"], "config": m["config"],
        "batch_norm": m["batch_norm"], "kernels": m["kernels"], "init": m["init"], "head": m["head"],
        "width": m["width"], "optimizer": t["optimizer"], "lr": record.get("lr"), "epochs": t["epochs"],
        "epochs_run": res.get("epochs_run"), "status": record.get("status"),
        "params": record.get("params"), "gmacs": record.get("gmacs"), "gflops": record.get("gflops"),
        "train_images_per_s": thr.get("train", {}).get("images_per_s"),
        "infer_images_per_s": thr.get("infer", {}).get("images_per_s"),
        "train_gflop_per_s": thr.get("train_gflop_per_s"), "ceiling_fraction": thr.get("ceiling_fraction"),
        "best_val_top1": res.get("best_val_top1"), "test_top1": test.get("top1"), "test_top5": test.get("top5"),
        "test_loss": test.get("loss"), "wall_s": record.get("wall_s"), "device": record.get("device"),
        "torch": record.get("versions", {}).get("torch"), "cuda": record.get("versions", {}).get("cuda"),
        "dataset": cfg["data"]["dataset"], "cell_id": record.get("cell_id"),
    }


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    atomic_write(path, df.to_csv(index=False))
