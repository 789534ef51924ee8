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
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock

from . import records
from .checkpoint import Checkpoint
from .data import DataSpec, load_data
from .grid import ABLATIONS, Ablation
from .measure import (count_flops, count_params, device_name, is_oom, resolve_device,
                      throughput, utilisation, versions)
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
    cpu_threads: int | None = None  # torch threads for a CPU cell (None: the process's)

    @property
    def device_kind(self) -> str:
        return resolve_device(self.device).type

    def config(self) -> dict:
        """The complete configuration: everything that can change the result (hashed)."""
        config = {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train),
                  "data": self.data.identity(), "seed": self.seed, "device": self.device_kind}
        if config["device"] == "cpu":
            config["cpu_threads"] = self.threads  # CPU float results depend on it
        return config

    @property
    def threads(self) -> int:
        return self.cpu_threads or torch.get_num_threads()

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
                            (base.bench_batch, base.bench_warmup, base.bench_repeats), base.cpu_threads))
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
    out.update(utilisation(gflops, out["train"]["images_per_s"], device, dtype))
    return out


# ------------------------------------------------------------------------------ test hooks

INJECT_ENV = "VGGBENCH_INJECT"


def injected() -> dict:
    """Fault injection for the tests, not a user option: $VGGBENCH_INJECT, comma-separated.

      oom>N         training at a batch size above N raises a (simulated) CUDA out-of-memory error
      error         every cell raises the same RuntimeError before it starts
      error=CASE    only the cells of that case (e.g. error=D-adam) raise it
      pause=N:FILE  once per FILE: before training step N (1-based, counted from the process's
                    start of training) write the process id to FILE, then sleep, so that a test
                    can kill or signal the cell in the middle of an epoch
    """
    text = os.environ.get(INJECT_ENV, "").strip()
    out: dict = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        key, _, value = item.partition("=")
        try:
            if item.startswith("oom>"):
                out["oom_above"] = int(item[4:])
            elif key == "error":
                out["error"] = value or "*"
            elif key == "pause" and ":" in value:
                step, _, marker = value.partition(":")
                out["pause"] = (int(step), marker)
            else:
                raise ValueError(item)
        except ValueError:
            raise ValueError(f"{INJECT_ENV}={text!r}: cannot read {item!r}; it is a test hook: unset it, or give "
                             "oom>N, error, error=CASE or pause=STEP:FILE") from None
    return out


def _install_hooks(model: torch.nn.Module, hooks: dict) -> None:
    """The injected out-of-memory error and pause, as a forward pre-hook on training steps."""
    if "oom_above" not in hooks and "pause" not in hooks:
        return
    steps = iter(range(1, 1 << 62))

    def pre_hook(module, args):
        if not module.training:
            return
        step, batch = next(steps), args[0].shape[0]
        if batch > hooks.get("oom_above", math.inf):
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch {batch} (simulated by {INJECT_ENV})")
        if "pause" in hooks and step == hooks["pause"][0] and not Path(hooks["pause"][1]).exists():
            records.atomic_write(hooks["pause"][1], str(os.getpid()))
            time.sleep(3600)

    model.register_forward_pre_hook(pre_hook)


def execute(cell: Cell, checkpoint: Checkpoint | None = None,
            batch_size: int | None = None) -> tuple[dict, torch.nn.Module]:
    """Measure and train one cell; returns its record (not yet written) and the trained model.
    batch_size: train at this batch instead of the cell's (run_cell's out-of-memory retries)."""
    t0 = time.perf_counter()
    hooks = injected()
    if hooks.get("error") in ("*", cell.case):
        raise RuntimeError(f"injected failure ({INJECT_ENV})")
    spec = cell.train.replace(batch_size=batch_size) if batch_size else cell.train
    device = resolve_device(cell.device)
    if device.type == "cpu":
        torch.set_num_threads(cell.threads)
    data = load_data(cell.data)
    if (data.num_classes, data.image_size) != (cell.model.num_classes, cell.model.image_size):
        raise ValueError(f"model expects {cell.model.num_classes} classes at {cell.model.image_size}px but "
                         f"{data.name} has {data.num_classes} at {data.image_size}px: fix --image-size/--profile")
    torch.manual_seed(cell.seed)
    model = build_model(cell.model)
    counts = count_params(model)
    flops = count_flops(model)
    thr = measure_throughput(cell, model, device, flops["gflops"])
    _install_hooks(model, hooks)
    result = train(model, data, spec, device, seed=cell.seed, checkpoint=checkpoint)
    return {
        "cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation, "case": cell.case,
        "status": result["status"], "lr": cell.train.learning_rate, "result": result,
        "train_batch_size": spec.batch_size,
        **counts, **flops, "throughput": thr, "device": device_name(device), "versions": versions(),
        "dataset": {"name": data.name, "sizes": data.sizes(), "classes": len(data.classes), "source": data.source},
        "commit": git_commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t0,
    }, model


def finished_record(cell: Cell, results_dir: str | os.PathLike) -> dict | None:
    """The cell's valid record, unless it is an error record (those are run again, never reused)."""
    record = records.read_record(records.record_path(results_dir, cell.id))
    return record if record is not None and record.get("status") != "error" else None


def run_cell(cell: Cell, results_dir: str | os.PathLike, rerun: bool = False) -> dict:
    """The cell's record: reused if a finished one exists (unless rerun), else computed and written.
    A file lock makes concurrent workers asking for the same cell compute it once.

    Training resumes from the cell's last per-epoch checkpoint if an earlier run was killed. On
    out-of-memory the cell is retried at half the batch (recorded in "oom_retries"). Any other
    exception becomes an error record (status "error", with the traceback), which is returned,
    not raised, so that a session goes on; it is never reused as a result."""
    path = records.record_path(results_dir, cell.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.stem}.lock"))):
        if rerun:
            _remove_own_files(path, cell.id, records.weights_path(results_dir, cell.id), record=True)
        else:
            record = finished_record(cell, results_dir)
            if record is not None:
                return {**record, "reused": True}
        # Temporary files of this cell left by a killed writer: no one else writes them (the lock).
        _remove_own_files(path, cell.id, records.weights_path(results_dir, cell.id))
        try:
            record, model = _execute_retrying_oom(cell, path)
        except Exception as err:  # KeyboardInterrupt / SystemExit (a requeued job) pass: the checkpoint stays
            record = records.write_record(path, error_record(cell, err))
            return {**record, "reused": False}
        if record["params"] <= SAVE_WEIGHTS_MAX_PARAMS:
            save_weights(model, records.weights_path(results_dir, cell.id))
        record = records.write_record(path, record)
        _remove_own_files(path, cell.id, checkpoints=True)  # the record is the result now
    return {**record, "reused": False}


def _checkpoint(path: Path, cell: Cell, batch_size: int) -> Checkpoint:
    """A cell's checkpoint; one per batch size, so a resumed run never mixes an OOM retry's state
    with the full batch's."""
    suffix = ".ckpt" if batch_size == cell.train.batch_size else f".bs{batch_size}.ckpt"
    return Checkpoint(path.with_suffix(suffix))


def _execute_retrying_oom(cell: Cell, path: Path) -> tuple[dict, torch.nn.Module]:
    batch, retries = cell.train.batch_size, []
    while True:
        checkpoint = _checkpoint(path, cell, batch)
        try:
            record, model = execute(cell, checkpoint, batch_size=batch)
            break
        except Exception as err:
            if not is_oom(err) or batch == 1:
                raise
            retries.append({"batch_size": batch, "error": f"{type(err).__name__}: {str(err).strip()[:300]}"})
            checkpoint.remove()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        batch //= 2
    record["oom_retries"] = retries
    return record, model


def _remove_own_files(path: Path, cell_id: str, weights: Path | None = None, record: bool = False,
                      checkpoints: bool = False) -> None:
    """Delete a cell's leftover temporary files (.<name>.*.tmp of atomic writes) and, if asked, its
    record (with its weights) and checkpoints. Only under the cell's lock."""
    doomed = list(path.parent.glob(f".{cell_id}.*.tmp"))
    if weights is not None:
        doomed += weights.parent.glob(f".{weights.name}.*.tmp")
    if record:
        doomed += [path, weights] if weights is not None else [path]
    if checkpoints or record:
        doomed += path.parent.glob(f"{cell_id}*.ckpt")
    for p in doomed:
        p.unlink(missing_ok=True)


def error_record(cell: Cell, err: BaseException) -> dict:
    """The record of a cell that raised: enough to see what failed, and where."""
    return {
        "cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation, "case": cell.case,
        "status": "error", "lr": cell.train.learning_rate,
        "error": {"type": type(err).__name__, "message": str(err).strip(),
                  "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))},
        "versions": versions(), "commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_weights(model: torch.nn.Module, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    records.atomic_write_bytes(path, buf.getvalue())


def problems(record: dict) -> list[str]:
    """What makes a record invalid as a measurement; empty if valid."""
    out = []
    status = record.get("status")
    if status == "error":
        err = record.get("error", {})
        return [f"the cell raised {err.get('type')}: {err.get('message')} (traceback in its record "
                f"{record.get('cell_id')}.json)"]
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
