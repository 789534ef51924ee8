"""Records grouped into *settings*: runs that differ only along the ablation axes (config, batch
norm, kernels, init, optimizer) belong together; a results folder holding e.g. a smoke run and a
3-epoch run gets one part per setting. A record is placed in the ablation cases it was run as
(records.memberships, written by the run from cells.Cell.membership, the same as the tables): one
cell, e.g. D with Kaiming init, SGD and no BN, can be a row of several ablations, each that ran it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import records
from ..data import DataSpec
from ..grid import ABLATIONS
from ..models import ModelSpec
from ..profiles import PROFILES
from ..trainer import TrainSpec
from ..errors import UsageError
from .text import epochs_text


AXES_MODEL = sorted({k for a in ABLATIONS.values() for c in a.cases for k in c.model})
AXES_TRAIN = sorted({k for a in ABLATIONS.values() for c in a.cases for k in c.train}
                    | {k for a in ABLATIONS.values() for k in a.train} | {"scale"})  # Case.scale too


@dataclass
class Setting:
    """Runs that differ only along the ablation axes: one profile, dataset, schedule, device."""
    index: int
    records: list[dict]
    rows: pd.DataFrame       # one row per (ablation, case, seed): records.flatten + num_classes, params_m
    curves: pd.DataFrame     # one row per (ablation, case, seed, epoch)
    profile: str | None
    overrides: list[str] = field(default_factory=list)
    superseded: int = 0      # older records of the same configuration (written before a spec gained a field)
    inferred: bool = False   # the profile was inferred from the configuration (records without provenance)
    placed_by_case: int = 0  # records from before memberships, placed in the case that wrote them (rows_of)

    @property
    def first(self) -> dict:
        return self.records[0]

    @functools.cached_property
    def by_id(self) -> dict[str, dict]:
        """The setting's records by cell id (built once: every claim's sides look records up)."""
        return {r.get("cell_id"): r for r in self.records}

    @property
    def seeds(self) -> list[int]:
        return sorted({r["config"]["seed"] for r in self.records})

    @property
    def num_classes(self) -> int:
        return self.first["config"]["model"]["num_classes"]

    @property
    def caption(self) -> str:
        """Where a table's numbers come from, in one line."""
        cfg = self.first["config"]
        seeds = self.seeds
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]} ({len(seeds)})"
        prof = f"profile {self.profile}" if self.profile else "profile unknown"
        if self.overrides:
            prof += f" ({', '.join(self.overrides)})"
        return (f"{prof}, dataset {dataset_text(cfg['data'])}, {epochs_text(cfg['train']['epochs'])}, {seed_text}, "
                f"width {cfg['model']['width']:g}, {cfg['device']}")


    @property
    def short_caption(self) -> str:
        cfg = self.first["config"]
        return (f"{self.profile or 'unknown profile'}, {dataset_text(cfg['data'])}, "
                f"{epochs_text(cfg['train']['epochs'])}, "
                f"{len(self.seeds)} seed{'s' * (len(self.seeds) != 1)}")


def dataset_text(data: dict) -> str:
    """The dataset as a caption names it, with its classes where a subset was chosen (--classes)."""
    classes = data.get("classes")
    return f"{data['dataset']} ({len(classes)} classes: {', '.join(classes)})" if classes else data["dataset"]


def load_records(results_dir: str | Path) -> list[dict]:
    """Every valid record under <results_dir>/runs/ (see records.read_record)."""
    runs = records.runs_dir(results_dir)
    if not runs.is_dir():
        raise FileNotFoundError(f"no run records: {runs} does not exist; run `pytest ablations` first")
    # A tuning cell's record (tuning.py) is one rate of a grid, never a seed of its case: left out.
    found = [r for p in sorted(runs.glob("*.json")) if (r := records.read_record(p)) is not None
             and r.get("config", {}).get("role", "final") == "final"]
    if not found:
        raise UsageError(f"no valid run records in {runs}; run `pytest ablations` first")
    return found


def provenance_of(record: dict) -> tuple[str | None, list[str], bool]:
    """The profile a record ran under and its overrides, in words, from the record's stored
    provenance; (inferred profile, differences, True) for records written without one."""
    prov = records.provenance(record)
    if prov["profile"]:
        return prov["profile"], [f"{k} {v}" for k, v in sorted((prov["overrides"] or {}).items())], False
    return (*profile_of(record), True)


def profile_of(record: dict) -> tuple[str | None, list[str]]:
    """The profile a record was most likely run under (the one its configuration differs from in
    the fewest fields, e.g. `--profile smoke --dataset cifar10` is smoke with one override) and
    those differences, in words. None if no profile shares its dataset or head."""
    cfg = record["config"]
    data, model, train_ = cfg["data"], cfg["model"], cfg["train"]
    best = None
    for p in PROFILES.values():
        pairs = [("dataset", data["dataset"], p.data.dataset), ("width", model["width"], p.model.width),
                 ("image size", data["image_size"], p.data.image_size), ("head", model["head"], p.model.head),
                 ("epochs", train_["epochs"], p.train.epochs), ("batch size", train_["batch_size"], p.train.batch_size),
                 ("train subset", data.get("train_subset"), p.data.train_subset),
                 ("test subset", data.get("test_subset"), p.data.test_subset),
                 ("schedule", train_.get("schedule"), p.train.schedule),
                 ("augment", train_.get("augment"), p.train.augment)]
        diffs = [f"{k} {v}" for k, v, base in pairs if v != base]
        if best is None or len(diffs) < len(best[1]):
            best = (p.name, diffs)
    if best is None or len(best[1]) > len(pairs) // 2:
        return None, []
    return best


def rows_of(record: dict) -> tuple[list[dict], bool]:
    """The table rows a record is, as the session that ran it wrote them (records.memberships: the
    same cells.Cell.membership the tables use), and True; for a record written before memberships
    were recorded (schema 1), a one-time fallback, and False: the one row of the case that wrote it
    (its stored ablation and case), if that case is still in the grid and the record is its row
    (not the training of an evaluation case, not a tuning rate); else none."""
    rows = records.memberships(record)
    if rows is not None:
        return rows, True
    ab = ABLATIONS.get(record.get("ablation"))
    case = next((c for c in ab.cases if c.id == record.get("case")), None) if ab else None
    cfg = record["config"]
    if case is None or cfg.get("evaluate", []) != list(case.evaluate) or cfg.get("role", "final") != "final":
        return [], False
    return [{"ablation": ab.name, "case": case.id, "tuned": records.tuned(record.get("tuning"))}], False


def _setting_of(record: dict, row: dict) -> str:
    """What a row shares with the other rows of its setting: its record's configuration but the
    fields the cases vary (AXES_*), the seed and the rate; the rate as the session set it: tuned
    (each case at its own chosen rate), the --lr its provenance names, or each case's own (None)."""
    cfg = record["config"]
    return records.canonical({
        "data": cfg["data"], "device": cfg["device"],
        "model": {k: v for k, v in cfg["model"].items() if k not in AXES_MODEL},
        "train": {k: v for k, v in cfg["train"].items() if k not in AXES_TRAIN and k != "lr"},
        "lr": "tuned" if row["tuned"] else (records.provenance(record)["overrides"] or {}).get("lr"),
    })


def _curve_rows(record: dict, ablation: str, case: str) -> list[dict]:
    res = record.get("result", {})
    return [{"ablation": ablation, "case": case, "seed": record["config"]["seed"], "status": record.get("status"),
             "epoch": h.get("epoch"), "train_loss": h.get("train_loss"), "train_top1": h.get("train_top1"),
             "val_top1": h.get("val_top1"), "val_loss": h.get("val_loss"), "lr": h.get("lr"),
             "epoch_s": h.get("epoch_s")} for h in res.get("history", [])]


EXTRA_COLUMNS = ["num_classes", "params_m", "train_images_per_s_min", "train_images_per_s_max",
                 "infer_images_per_s_min", "infer_images_per_s_max", "epoch_s"]


def _extra_columns(record: dict) -> dict:
    """What the report shows beyond records.flatten: the throughput range of each timing and the
    median wall time of an epoch (history epoch_s; absent in records written before it)."""
    thr = record.get("throughput", {})
    out = {f"{kind}_images_per_s_{end}": thr.get(kind, {}).get(f"images_per_s_{end}")
           for kind in ("train", "infer") for end in ("min", "max")}
    times = [h["epoch_s"] for h in record.get("result", {}).get("history", []) if h.get("epoch_s") is not None]
    out["epoch_s"] = statistics.median(times) if times else None
    return out


def normalised(record: dict) -> dict:
    """The record with config fields added to the specs since it was written set to their defaults
    (e.g. TrainSpec.compile), so that records from before and after such a change compare equal."""
    cfg = record["config"]
    return {**record, "config": {**cfg, "model": {**dataclasses.asdict(ModelSpec()), **cfg["model"]},
                                 "train": {**dataclasses.asdict(TrainSpec()), **cfg["train"]},
                                 "data": {**DataSpec().identity(), **cfg["data"]}}}


def newest_per_cell(recs: list[dict]) -> tuple[list[dict], int]:
    """One record per configuration (the newest by `created`) and how many older ones were dropped."""
    keep: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: str(r.get("created") or "")):
        keep[records.canonical(r["config"])] = r
    return list(keep.values()), len(recs) - len(keep)


def group_settings(all_records: list[dict]) -> list[Setting]:
    """Group the rows of records (rows_of) into settings (largest first). A record that is no row
    (a start net, the training of an evaluation case) is in none: its rows' records name it."""
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for r in map(normalised, all_records):
        for row in rows_of(r)[0]:
            groups.setdefault(_setting_of(r, row), []).append((r, row))
    settings = []
    for i, group in enumerate(sorted(groups.values(), key=len, reverse=True), 1):
        recs, superseded = newest_per_cell(list({id(r): r for r, _ in group}.values()))
        kept = {id(r) for r in recs}
        profile, overrides, inferred = provenance_of(recs[0])
        rows, curves = [], []
        for r, place in group:
            if id(r) not in kept:
                continue
            row = records.flatten(r, place)
            row.update(num_classes=r["config"]["model"]["num_classes"],
                       params_m=(r.get("params") or math.nan) / 1e6, **_extra_columns(r))
            rows.append(row)
            curves += _curve_rows(r, place["ablation"], place["case"])
        settings.append(Setting(i, recs, records.table(rows, records.COLUMNS + EXTRA_COLUMNS),
                                pd.DataFrame(curves), profile, overrides, superseded, inferred,
                                sum(not (rows_of(r)[1]) for r in recs)))
    return settings
