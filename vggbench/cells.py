"""A cell is one complete run: (model spec, training spec, data spec, seed, device kind).

`cells_for` turns an ablation's cases into cells under a profile and the user's options;
`run_cell` measures and trains one cell and writes its record (or reuses a finished one);
`problems` lists what makes a record invalid as a measurement (not whether the science held).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import io
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock

from . import records
from .checkpoint import Checkpoint
from .data import DataSpec, load_data
from .grid import ABLATIONS, Ablation
from .measure import (count_flops, count_params, device_name, matmul_ceiling, resolve_device, throughput,
                      versions)
from .models import ModelSpec, analytic_macs, build_model
from .profiles import PROFILES, Profile
from .trainer import TrainSpec, autocast_dtype, train

STATUSES = ("ok", "diverged", "stalled")
# Final weights are kept (results/weights/<cell>.pt) for models up to this size: the report draws
# feature maps from them; full-width ImageNet VGGs (130M+ params) would fill a disk.
SAVE_WEIGHTS_MAX_PARAMS = 20_000_000


@dataclass(frozen=True)
class Options:
    """What the user chose on the command line; None means "the profile's value"."""
    profile: str = "smoke"
    seeds: int = 1
    device: str = "auto"
    epochs: int | None = None
    width: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    skip_bad: bool = False
    compile: bool = False
    dataset: str | None = None

    def baseline(self) -> Profile:
        p = PROFILES[self.profile]
        data = p.data.replace(**{k: v for k, v in dict(
            dataset=self.dataset, image_size=self.image_size, train_subset=self.train_subset,
            test_subset=self.test_subset, data_dir=self.data_dir, cache_dir=self.cache_dir).items() if v is not None},
            skip_bad=self.skip_bad)
        model = p.model.replace(**_given(width=self.width, image_size=self.image_size))
        if data.dataset != p.data.dataset:
            # Another dataset than the profile's (e.g. --dataset imagefolder --data-dir flowers/):
            # the class count comes from the data itself (decoded once, cached).
            model = model.replace(num_classes=load_data(data).num_classes)
        train_ = p.train.replace(**_given(epochs=self.epochs, batch_size=self.batch_size), compile=self.compile)
        return p.replace(data=data, model=model, train=train_)


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


@dataclass(frozen=True)
class Cell:
    ablation: str
    case: str
    model: ModelSpec
    train: TrainSpec
    data: DataSpec
    seed: int
    device: str = "auto"
    bench: tuple[int, int, int] = field(default=(32, 1, 3), compare=False)  # batch, warm-up, repeats

    @property
    def device_kind(self) -> str:
        return resolve_device(self.device).type

    def config(self) -> dict:
        """The complete configuration: everything that can change the result (hashed)."""
        return {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train),
                "data": self.data.identity(), "seed": self.seed, "device": self.device_kind}

    @property
    def id(self) -> str:
        return records.digest(self.config())[:16]

    @property
    def test_id(self) -> str:
        return f"{self.case}-s{self.seed}"


def cells_for(ablation: Ablation | str, options: Options) -> list[Cell]:
    ablation = ABLATIONS[ablation] if isinstance(ablation, str) else ablation
    base = options.baseline()
    out = []
    for case in ablation.cases:
        model = base.model.replace(**case.model)
        train_ = base.train.replace(**case.train)
        if options.lr is not None:
            train_ = train_.replace(lr=options.lr)
        elif train_.lr is None:
            train_ = train_.replace(lr=train_.learning_rate)  # record the number, not "default"
        for seed in range(options.seeds):
            out.append(Cell(ablation.name, case.id, model, train_, base.data, seed, options.device,
                            (base.bench_batch, base.bench_warmup, base.bench_repeats)))
    return out


# ------------------------------------------------------------------------------ running

@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def measure_throughput(cell: Cell, model: torch.nn.Module, device: torch.device, gflops: float) -> dict:
    batch, warmup, repeats = cell.bench
    amp = autocast_dtype(cell.train, device)
    out = {}
    for kind, is_train in (("train", True), ("infer", False)):
        out[kind] = throughput(copy.deepcopy(model), device, batch, train=is_train, warmup=warmup, repeats=repeats,
                               amp_dtype=amp, channels_last=cell.train.channels_last)
    dtype = "bfloat16" if amp is not None else "float32"
    ceiling = matmul_ceiling(str(device), dtype)
    achieved = 3 * gflops * 1e9 * out["train"]["images_per_s"]  # training = 3 x forward FLOPs
    out.update(ceiling_gflop_per_s=ceiling / 1e9, ceiling_dtype=dtype, train_gflop_per_s=achieved / 1e9,
               ceiling_fraction=achieved / ceiling)
    return out


def execute(cell: Cell, checkpoint: Checkpoint | None = None) -> tuple[dict, torch.nn.Module]:
    """Measure and train one cell; returns its record (not yet written) and the trained model."""
    t0 = time.perf_counter()
    device = resolve_device(cell.device)
    data = load_data(cell.data)
    if (data.num_classes, data.image_size) != (cell.model.num_classes, cell.model.image_size):
        raise ValueError(f"model expects {cell.model.num_classes} classes at {cell.model.image_size}px but "
                         f"{data.name} has {data.num_classes} at {data.image_size}px: fix --image-size/--profile")
    torch.manual_seed(cell.seed)
    model = build_model(cell.model)
    counts = count_params(model)
    flops = count_flops(model)
    thr = measure_throughput(cell, model, device, flops["gflops"])
    result = train(model, data, cell.train, device, seed=cell.seed, checkpoint=checkpoint)
    return {
        "cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation, "case": cell.case,
        "status": result["status"], "lr": cell.train.learning_rate, "result": result,
        **counts, **flops, "throughput": thr, "device": device_name(device), "versions": versions(),
        "dataset": {"name": data.name, "sizes": data.sizes(), "classes": len(data.classes), "source": data.source},
        "commit": git_commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t0,
    }, model


def run_cell(cell: Cell, results_dir: str | os.PathLike, rerun: bool = False) -> dict:
    """The cell's record: reused if a valid one exists (unless rerun), else computed and written.
    A file lock makes concurrent workers asking for the same cell compute it once."""
    path = records.record_path(results_dir, cell.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.stem}.lock"))):
        if not rerun:
            record = records.read_record(path)
            if record is not None:
                return {**record, "reused": True}
        checkpoint = Checkpoint(path.with_suffix(".ckpt"))
        if rerun:
            checkpoint.remove()
        record, model = execute(cell, checkpoint)
        if record["params"] <= SAVE_WEIGHTS_MAX_PARAMS:
            save_weights(model, records.weights_path(results_dir, cell.id))
        record = records.write_record(path, record)
        checkpoint.remove()  # the record is the result now
    return {**record, "reused": False}


def save_weights(model: torch.nn.Module, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    records.atomic_write_bytes(path, buf.getvalue())


def problems(record: dict) -> list[str]:
    """What makes a record invalid as a measurement; empty if valid."""
    out = []
    status = record.get("status")
    if status not in STATUSES:
        out.append(f"status {status!r} is not one of {STATUSES}")
    res = record.get("result", {})
    if status != "diverged":
        for k, v in res.get("test", {}).items():
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                out.append(f"test {k} = {v} is not finite")
        if "test" not in res:
            out.append("no test metrics")
    spec = ModelSpec(**record["config"]["model"])
    analytic = analytic_macs(spec)["total"] / 1e9
    if abs(record.get("gmacs", -1) - analytic) > 1e-6 * analytic:
        out.append(f"measured {record.get('gmacs')} GMACs != analytic {analytic}")
    if abs(record.get("gflops", -1) - 2 * analytic) > 0.01 * 2 * analytic:
        out.append(f"FlopCounterMode {record.get('gflops')} GFLOPs != 2 x {analytic} GMACs")
    for kind in ("train", "infer"):
        ips = record.get("throughput", {}).get(kind, {}).get("images_per_s")
        if not (isinstance(ips, (int, float)) and ips > 0):
            out.append(f"{kind} throughput {ips} is not a positive number")
    return out
