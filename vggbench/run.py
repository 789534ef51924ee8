"""Running one cell: measure and train it, write its record (or reuse a finished one).

`execute_cell` is the one executor: it runs a cell's needs (cells.Cell.needs: the training of an
evaluation cell, the net it starts from, its tuning cells) first, then the cell under its lock:
reuses a finished record, resumes from a checkpoint, retries at half the batch on out-of-memory,
and turns any other failure into an error record. `run_cell` runs a cell as a row of its
ablation's table (the record says so: records.memberships). `new_record` builds every record;
`problems` lists what makes a record invalid as a measurement (not whether the science held).
"""
from __future__ import annotations

import copy
import functools
import io
import math
import os
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__, faults, records, tuning
from .cells import Cell
from .checkpoint import Checkpoint
from .data import DataError, ImageData, load_data
from .device import device_name, is_oom, resolve_device, set_math_mode
from .measure import count_flops, count_params, train_step_flops, versions
from .models import INIT_STD, ModelSpec, analytic_macs, build_model, load_trained
from .notices import locked, notice
from .pretrained import load_weights
from .progress import Display, Session, Watch
from .speed import model_speed
from .evaluation import evaluate_protocol
from .errors import UsageError
from .statuses import NO_WEIGHTS, TRAINED, Status
from .trainer import amp_name, autocast_dtype, train
from .transfer import freeze
from .warmstart import copy_layers

# Final weights are kept (results/weights/<cell>.pt) for models up to this size: the report draws
# feature maps from them; full-width ImageNet VGGs (130M+ params) would fill a disk.
SAVE_WEIGHTS_MAX_PARAMS = 20_000_000


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def measure_throughput(cell: Cell, model: torch.nn.Module, device: torch.device, gflops: float) -> dict:
    batch, warmup, repeats, window_s = cell.bench
    # Frozen layers (transfer modes) cut the backward: count its FLOPs rather than assume 3 x forward.
    frozen = not all(p.requires_grad for p in model.parameters())
    train_gflops = train_step_flops(copy.deepcopy(model)) / 1e9 if frozen else None
    return model_speed(model, device, batch, cell.train, warmup, repeats, window_s, gflops, train_gflops)


def execute(cell: Cell, checkpoint: Checkpoint | None = None,
            batch_size: int | None = None, on_epoch=None, start: tuple[Path, str] | None = None) -> tuple[dict, torch.nn.Module]:
    """Measure and train one cell; returns its record (not yet written) and the trained model.
    batch_size: train at this batch instead of the cell's (run_cell's out-of-memory retries);
    on_epoch: the trainer's per-epoch callback; start: (the trained weights of cell.start, its status)."""
    t0 = time.perf_counter()
    hooks = faults.injected()
    if hooks.get("error") in ("*", cell.case):
        raise RuntimeError(f"injected failure ({faults.INJECT_ENV})")
    spec = cell.train.replace(batch_size=batch_size) if batch_size else cell.train
    device = resolve_device(cell.device)
    if device.type == "cpu":
        torch.set_num_threads(cell.threads)
    set_math_mode(device)  # before the first measurement: the same mode for throughput and training
    data = load_data(cell.data)
    if cell.data.fingerprint and data.fingerprint != cell.data.fingerprint:
        raise DataError(f"the data of {cell.data.dataset} changed since this cell was made ({data.origin}): "
                        "run the session again")
    # With a training scale the stored images are cropped to the model's size (at least as large).
    sizes_fit = (data.image_size >= cell.model.image_size if cell.train.scale is not None
                 else data.image_size == cell.model.image_size)
    if data.num_classes != cell.model.num_classes or not sizes_fit:
        raise UsageError(f"model expects {cell.model.num_classes} classes at {cell.model.image_size}px but "
                         f"{data.name} has {data.num_classes} at {data.image_size}px: fix --image-size/--profile")
    torch.manual_seed(cell.seed)
    model = build_model(cell.model)
    started = None
    if cell.start is not None:  # the paper's warm starts: layers of the trained start cell (warmstart.py)
        weights, status = start
        source = load_trained(cell.start.model, weights)
        started = {"cell_id": cell.start.id, "case": cell.start.case, "status": status,
                   "layers": copy_layers(model, source, cell.start_layers), "lr": cell.train.learning_rate}
    if cell.train.pretrained:
        load_weights(model, cell.weights)  # all but the last layer, which stays new for the data's classes
    freeze(model, cell.train.transfer)     # before counting: trainable_params is the mode's
    counts = count_params(model)
    flops = count_flops(model)
    thr = measure_throughput(cell, model, device, flops["gflops"])
    faults.install_hooks(model, hooks)
    faults.trace(hooks, cell.case, cell.id)
    result = train(model, data, spec, device, seed=cell.seed, checkpoint=checkpoint, on_epoch=on_epoch)
    wall_s = time.perf_counter() - t0
    earlier = checkpoint.earlier if checkpoint is not None else None
    return trained_record(cell, data, result, counts=counts, flops=flops, throughput=thr, device=device_name(device),
                          train_batch_size=spec.batch_size, amp=amp_name(spec, device), wall_s=wall_s,
                          earlier=earlier, started=started), model


def trained_record(cell: Cell, data: ImageData, result: dict, *, counts: dict, flops: dict, throughput: dict,
                   device: str, train_batch_size: int, amp: str, wall_s: float, earlier: dict | None = None,
                   started: dict | None = None) -> dict:
    """The record of a trained cell (a final or a tuning cell), from what execute measured (the
    report's tests build theirs here too, so a field added here reaches them)."""
    earlier = earlier or {"attempts": 0, "wall_s": 0.0, "epoch": 0}
    return new_record(
        cell, result["status"], provenance(cell, data, earlier, wall_s), result=result,
        train_batch_size=train_batch_size, amp=amp, **counts, **flops, throughput=throughput, device=device,
        dataset={"name": data.name, "sizes": data.sizes(), "classes": len(data.classes), "source": data.source},
        wall_s=wall_s, init_std=INIT_STD.get(cell.model.init),  # the paper's "10^-2 variance", read as which std
        **({"start": started} if started is not None else {}))


# The fields new_record sets for every cell: an evaluation record takes the rest from its training's.
HEAD = ("schema", "cell_id", "config", "ablation", "case", "status", "lr", "versions", "commit", "created",
        "provenance", "tuning", "cases")


def new_record(cell: Cell, status: str, made: dict, **fields) -> dict:
    """The one place a record is built, for trained, tuning, evaluation and error records alike
    (records.SCHEMA: what its readers rely on; records.SCHEMA_VERSION): the fields every record
    has, from the cell (its id, configuration, ablation and case, rate, what tuning found), the
    status, how it was made (`made`: provenance()), then `fields`. Its table rows ("cases") are
    added by the executor (records.with_membership), which knows whether the cell ran as a row."""
    return {"schema": records.SCHEMA_VERSION, "cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation,
            "case": cell.case, "status": status, "lr": cell.train.learning_rate, "versions": versions(),
            "commit": git_commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": made, "cases": [], **({"tuning": cell.tuning} if cell.tuning is not None else {}), **fields}


def provenance(cell: Cell, data: ImageData | None, earlier: dict, wall_s: float | None) -> dict:
    """How a record was made, outside its hash (records.provenance reads it)."""
    return {"profile": cell.profile or None, "overrides": dict(cell.overrides),
            "data_source": {"dataset": cell.data.dataset, "data_dir": cell.data.data_dir,
                            "origin": data.origin if data is not None else None},
            "resumed": earlier["attempts"] > 0, "resumed_from_epoch": earlier["epoch"] if earlier["attempts"] else None,
            "attempts": earlier["attempts"] + 1,
            "wall_s_total": earlier["wall_s"] + wall_s if wall_s is not None else None,
            "version": __version__, "commit": git_commit()}


def finished_record(cell: Cell, results_dir: str | os.PathLike, set_aside_corrupt: bool = False) -> dict | None:
    """The cell's valid record, unless it is an error record (those are run again, never reused)."""
    record = records.read_record(records.record_path(results_dir, cell.id), set_aside_corrupt)
    return record if record is not None and record.get("status") != Status.ERROR else None


def run_cell(cell: Cell, results_dir: str | os.PathLike, rerun: bool = False, display: Display | None = None,
             session: Session | None = None, keep_weights: bool = False) -> dict:
    """The record of a cell that is a row of its ablation's table (as cells_for made it): reused if a
    finished one exists (unless rerun), else computed and written, after the cells it needs
    (Cell.needs). The record names the rows it is (records.memberships: this cell's is added on
    reuse too), which is how the tables and the report place it. See `execute_cell`."""
    return execute_cell(cell, results_dir, rerun=rerun, display=display, session=session,
                        keep_weights=keep_weights, row=True)


def execute_cell(cell: Cell, results_dir: str | os.PathLike, *, rerun: bool = False, display: Display | None = None,
                 session: Session | None = None, keep_weights: bool = False, row: bool = False) -> dict:
    """The one executor: the cell's needs first (Cell.needs, each through this function, under its
    own lock: computed once however many cells and workers need it), then the cell under its lock.

    A cell that starts from another's trained net (the paper's from-A and S = 384 from S = 256) or
    an evaluation cell keeps its needed net's weights (whatever the model's size). The start cell is
    never rerun for the cells that start from it (it is its own row). A cell to be tuned runs its
    tuning cells, then itself at the rate they chose (tuning.resolve); its record names them.

    Training resumes from the cell's last per-epoch checkpoint if an earlier run was killed. On
    out-of-memory the cell is retried at half the batch (recorded in "oom_retries"). Any other
    exception becomes an error record (status "error", with the traceback), which is returned,
    not raised, so that a session goes on; it is never reused as a result. If even the error record
    cannot be written (a full disk), it is returned unwritten, its message saying so.

    While it trains, the cell's progress is shown on `display` (progress.py), its curves go to
    <results>/tensorboard/ and its heartbeat to <results>/progress/ (for `vggbench status`).
    row: the cell is a row of its ablation's table (run_cell): its membership goes into its record."""
    done = {need.id: execute_cell(need, results_dir, rerun=rerun and need is not cell.start, display=display,
                                  session=session, keep_weights=need.role == "final")
            for need in cell.needs()}
    if cell.evaluate:  # tuned or not as its training cell was (tuning.resolve)
        base = done[cell.training_cell().id]
        cell = tuning.resolve(cell, results_dir) or cell
        return _locked(cell, results_dir, rerun, row, lambda: (evaluation_record(cell, base, results_dir), None))
    start = None
    if cell.start is not None:
        first = done[cell.start.id]
        if first["status"] in NO_WEIGHTS:  # no usable weights (a stalled net's are: its record says so)
            return {**error_record(cell, RuntimeError(
                f"the cell it starts from ({cell.start.case}, {cell.start.id}) ended {first['status']}: "
                "no trained weights to start from")), "reused": False}
        start = records.weights_path(results_dir, first["cell_id"]), first["status"]
    if cell.tune:
        resolved = tuning.resolve(cell, results_dir)
        if resolved is None:  # a tuning cell's record could not be written (its own error was said)
            return {**error_record(cell, RuntimeError("a tuning cell left no record: nothing to choose from")),
                    "reused": False}
        cell = resolved
        if cell.tuning["chosen_lr"] is None:
            notice(f"{cell.ablation}/{cell.case}: {cell.tuning['note']}")
    watch = Watch(cell, results_dir, display, session)
    path = records.record_path(results_dir, cell.id)
    return _locked(cell, results_dir, rerun, row, lambda: _execute_retrying_oom(cell, path, watch.epoch, start),
                   watch, keep_weights)


class _Unwatched:
    """An evaluation cell's Watch: it trains nothing (no curves, no heartbeat, no line of its own)."""
    def reused(self, record): pass
    def start(self): pass
    def finish(self, record): pass
    def abort(self): pass


def _locked(cell: Cell, results_dir, rerun: bool, row: bool, compute, watch=_Unwatched(),
            keep_weights: bool = False) -> dict:
    """The cell's record under its lock: its finished record reused (unless rerun; a record whose
    weights another cell needs and were not kept is computed again), else compute() -> (record, the
    trained model or None), its weights saved, the record written; any failure an error record."""
    path, weights = records.record_path(results_dir, cell.id), records.weights_path(results_dir, cell.id)
    lock = records.lock_path(results_dir, cell.id)
    for folder in (path.parent, lock.parent):
        folder.mkdir(parents=True, exist_ok=True)
    membership = cell.membership() if row else None
    with locked(lock, f"{'evaluation' if cell.evaluate else 'cell'} {cell.ablation}/{cell.case} (seed {cell.seed})"):
        if rerun:
            _remove_own_files(path, cell.id, weights, record=True)
        else:
            record = finished_record(cell, results_dir, set_aside_corrupt=True)
            if record is not None and keep_weights and not weights.exists():
                notice(f"cell {cell.ablation}/{cell.case} (seed {cell.seed}) computed again: another cell starts "
                       f"from its trained net and its weights were not kept ({weights})")
            elif record is not None:
                if membership is not None and membership not in (records.memberships(record) or []):
                    try:  # the record is this row too (one cell can be a case of several ablations)
                        record = records.write_record(path, records.with_membership(record, membership))
                    except OSError as err:
                        notice(f"{path}: could not add row {cell.ablation}/{cell.case} to it ({err}): "
                               f"`vggbench report` leaves it out of that row")
                watch.reused(record)
                return {**record, "reused": True}
        # Temporary files of this cell left by a killed writer: no one else writes them (the lock).
        _remove_own_files(path, cell.id, weights)
        watch.start()
        try:
            record, model = compute()
            if model is not None and (record["params"] <= SAVE_WEIGHTS_MAX_PARAMS or keep_weights):
                save_weights(model, weights)
            record = records.write_record(path, records.with_membership(record, membership))
        except Exception as err:  # KeyboardInterrupt / SystemExit (a requeued job) pass: the checkpoint stays
            record = _written(path, records.with_membership(error_record(cell, err), membership))
            _remove_own_files(path, cell.id, weights)
            watch.finish(record)
            return {**record, "reused": False}
        except BaseException:
            watch.abort()
            raise
        _remove_own_files(path, cell.id, checkpoints=True)  # the record is the result now
        watch.finish(record)
    return {**record, "reused": False}


def _written(path: Path, record: dict) -> dict:
    """An error record written; if even it cannot be (a full disk), returned unwritten, saying so."""
    try:
        return records.write_record(path, record)
    except OSError as write_err:
        record["error"]["unwritten"] = f"{type(write_err).__name__}: {write_err}"
        return record


def evaluation_record(cell: Cell, base: dict, results_dir: str | os.PathLike) -> dict:
    """The record of an evaluation cell: its training cell's record (`base`) with result["evaluation"]
    added: every method of cell.evaluate on the test split (evaluation.evaluate_protocol), at the
    test scales of the training scale, from the weights its training kept. Written under the
    evaluation cell's id; "trained_by" names the training cell. Evaluating never trains again."""
    record = new_record(cell, base["status"], base["provenance"], trained_by=base["cell_id"], lr=base.get("lr"),  # tuned: its rate
                        **{k: v for k, v in base.items() if k not in (*HEAD, "reused", "checksum", "trained_by")})
    if base["status"] in NO_WEIGHTS:  # a stalled net is evaluated too: it scores at chance
        return record
    t0 = time.perf_counter()
    evaluation = evaluate_cell(cell, records.weights_path(results_dir, base["cell_id"]))
    return {**record, "result": {**record["result"], "evaluation": evaluation}, "evaluation_s": time.perf_counter() - t0}


def evaluate_cell(cell: Cell, weights: Path) -> dict:
    """Section 3.2's methods (cell.evaluate) on the test split, from the trained weights."""
    device = resolve_device(cell.device)
    if device.type == "cpu":
        torch.set_num_threads(cell.threads)
    set_math_mode(device)
    data = load_data(cell.data)
    model = load_trained(cell.model, weights).to(device)
    return evaluate_protocol(model, data.test_x, data.test_y, data.mean, data.std, cell.model.image_size,
                             cell.train.scale or (cell.model.image_size,) * 2, cell.evaluate,
                             batch_size=cell.train.batch_size, device=device,
                             amp_dtype=autocast_dtype(cell.train, device), grid=cell.crop_grid)


def _checkpoint(path: Path, cell: Cell, batch_size: int) -> Checkpoint:
    """A cell's checkpoint; one per batch size, so a resumed run never mixes an OOM retry's state
    with the full batch's."""
    suffix = ".ckpt" if batch_size == cell.train.batch_size else f".bs{batch_size}.ckpt"
    return Checkpoint(path.with_suffix(suffix))


def _execute_retrying_oom(cell: Cell, path: Path, on_epoch=None, start: tuple[Path, str] | None = None) -> tuple[dict, torch.nn.Module]:
    batch, retries = cell.train.batch_size, []
    while True:
        checkpoint = _checkpoint(path, cell, batch)
        try:
            record, model = execute(cell, checkpoint, batch_size=batch, on_epoch=on_epoch, start=start)
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
    return new_record(cell, Status.ERROR.value, provenance(cell, None, {"attempts": 0, "wall_s": 0.0, "epoch": 0}, None),
                      error={"type": type(err).__name__, "message": str(err).strip(),
                             "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))})


def save_weights(model: torch.nn.Module, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    records.atomic_write_bytes(path, buf.getvalue())


def problems(record: dict) -> list[str]:
    """What makes a record invalid as a measurement; empty if valid."""
    out = []
    status = record.get("status")
    if status == Status.ERROR:
        err = record.get("error", {})
        where = (f"its record could not be written either: {err['unwritten']}" if err.get("unwritten")
                 else f"traceback in its record {record.get('cell_id')}.json")
        return [f"the cell raised {err.get('type')}: {err.get('message')} ({where})"]
    if status not in TRAINED:
        out.append(f"status {status!r} is not one of {tuple(map(str, TRAINED))}")
    res = record.get("result", {})
    if status != Status.DIVERGED:
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
