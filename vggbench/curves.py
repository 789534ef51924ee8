"""TensorBoard event files of each cell: its curves per epoch and its configuration as hparams.

Layout: <results>/tensorboard/<ablation>/<case>-s<seed>/, so that
`tensorboard --logdir results/tensorboard` shows the cases of an ablation side by side.

Per epoch (step = epoch, 1-based): Loss/train, Loss/val, Accuracy/train, Accuracy/val (top-1, %),
Accuracy/val_top5, LR, Throughput/train_images_per_s, Time/epoch_s. When the cell ends: its
configuration as hparams with its final metrics (hparam/best_val_top1, hparam/test_top1, ...).

A killed cell resumes from its last checkpoint, which may be older than the last epoch written
here. The resumed run's writer is opened with `purge_step` = its first epoch: TensorBoard (and its
EventAccumulator) then hides every earlier point at that step or later, so the curve continues
with one point per epoch, never two. A cell that starts from epoch 1 (a new run, --rerun, an
out-of-memory retry) removes the folder first.
"""
from __future__ import annotations

import math
import os
import shutil
import threading
from pathlib import Path

from .notices import notice
from .records import Results
from .statuses import Status

SCALARS = {  # tag -> key of the trainer's per-epoch row
    "Loss/train": "train_loss", "Loss/val": "val_loss", "Accuracy/train": "train_top1",
    "Accuracy/val": "val_top1", "Accuracy/val_top5": "val_top5", "LR": "lr",
}


def curves_dir(results_dir: str | os.PathLike, ablation: str, case: str, seed: int) -> Path:
    return Results(results_dir).curves(ablation, case, seed)


class Curves:
    """The event files of one cell, written by the one process that holds the cell's lock."""

    def __init__(self, results_dir: str | os.PathLike, cell):
        self.dir = curves_dir(results_dir, cell.ablation, cell.case, cell.seed)
        self.cell = cell
        self.writer = None
        self.last = 0   # the last epoch written by this writer
        self.failed = False  # a write failed (a full disk): no more curves for this cell

    def epoch(self, row: dict) -> None:
        if self.failed:
            return
        try:
            self._epoch(row)
        except OSError as err:  # a full disk: the curves stop, the cell goes on
            self._fail(err)

    def _fail(self, err: OSError) -> None:
        self.failed = True
        notice(f"curves of {self.cell.ablation}/{self.cell.case} (seed {self.cell.seed}) not written past here "
               f"({type(err).__name__}: {err}); the cell goes on")
        try:
            self.close()
        except OSError:  # the same error again, from the writer's last flush
            self.writer = None

    def _epoch(self, row: dict) -> None:
        k = row["epoch"]
        if self.writer is None or k != self.last + 1:
            self._open(k)
        w = self.writer
        for tag, key in SCALARS.items():
            if key in row:
                w.add_scalar(tag, row[key], k)
        if row.get("train_s"):
            w.add_scalar("Throughput/train_images_per_s", row["images"] / row["train_s"], k)
        if "epoch_s" in row:
            w.add_scalar("Time/epoch_s", row["epoch_s"], k)
        w.flush()  # one epoch is one visible step, also if the process dies in the next one
        self.last = k

    def _open(self, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        _quiet_writer_threads()
        self.close()
        if first_epoch == 1:
            shutil.rmtree(self.dir, ignore_errors=True)  # a new run of the cell: a new curve
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.dir), purge_step=first_epoch if first_epoch > 1 else None)

    def finish(self, record: dict) -> None:
        """The configuration and final metrics as hparams (TensorBoard's HPARAMS tab), then close."""
        try:
            self._finish(record)
        except OSError as err:
            self._fail(err)

    def _finish(self, record: dict) -> None:
        if self.writer is not None and record.get("status") != Status.ERROR:
            from torch.utils.tensorboard.summary import hparams

            result = record.get("result", {})
            metrics = {"hparam/best_val_top1": result.get("best_val_top1"),
                       "hparam/test_top1": result.get("test", {}).get("top1"),
                       "hparam/test_top5": result.get("test", {}).get("top5"),
                       "hparam/train_images_per_s": record.get("throughput", {}).get("train", {}).get("images_per_s")}
            metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            step = result.get("epochs_run", self.last)
            for summary in hparams(hparam_values(self.cell, record), metrics):
                self.writer.file_writer.add_summary(summary, step)
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value, step)
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write (ENOSPC), and Python prints its traceback;
    the same error reaches the cell's thread at its next write, where Curves says it in one line."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "vggbench", False):
        return

    def hook(args):
        if not (isinstance(args.thread, _AsyncWriterThread) and issubclass(args.exc_type, OSError)):
            previous(args)
    hook.vggbench = True
    threading.excepthook = hook


def hparam_values(cell, record: dict) -> dict:
    """The cell's configuration as flat hparams (numbers, strings, booleans; None as "none")."""
    config = cell.config()
    out = {"ablation": cell.ablation, "case": cell.case, "seed": cell.seed, "cell_id": cell.id,
           "status": record.get("status", "?"), "device": config["device"]}
    for part in ("model", "train"):
        for k, v in config[part].items():
            out[f"{part}.{k}"] = v
    out["data.dataset"] = config["data"].get("dataset", config["data"].get("name", "?"))
    return {k: v if isinstance(v, (bool, int, float, str)) else ("none" if v is None else str(v))
            for k, v in out.items()}
