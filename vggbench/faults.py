"""Fault injection for the tests (not a user option): $VGGBENCH_INJECT makes cells fail, run out of
memory or pause where a test needs them to. Read once per cell by run.execute.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from . import records
from .errors import UsageError


INJECT_ENV = "VGGBENCH_INJECT"


def injected() -> dict:
    """Fault injection for the tests, not a user option: $VGGBENCH_INJECT, comma-separated.

      oom>N         training at a batch size above N raises a (simulated) CUDA out-of-memory error
      error         every cell raises the same RuntimeError before it starts
      error=CASE    only the cells of that case (e.g. error=D-adam) raise it
      pause=N:FILE  once per FILE: before training step N (1-based, counted from the process's
                    start of training) write the process id to FILE, then sleep, so that a test
                    can kill or signal the cell in the middle of an epoch
      trace=FILE    every cell that trains appends "<case> <cell id>" to FILE (a test counts how
                    often a shared cell, such as the net A others start from, was computed)
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
            elif key == "trace" and value:
                out["trace"] = value
            elif key == "pause" and ":" in value:
                step, _, marker = value.partition(":")
                out["pause"] = (int(step), marker)
            else:
                raise ValueError(item)
        except ValueError:
            raise UsageError(f"{INJECT_ENV}={text!r}: cannot read {item!r}; it is a test hook: unset it, or give "
                             "oom>N, error, error=CASE, pause=STEP:FILE or trace=FILE") from None
    return out


def trace(hooks: dict, case: str, cell_id: str) -> None:
    """With trace=FILE: one line for a cell about to train (appended: concurrent writers keep whole lines)."""
    if "trace" in hooks:
        with open(hooks["trace"], "a") as f:
            f.write(f"{case} {cell_id}\n")


def install_hooks(model: torch.nn.Module, hooks: dict) -> None:
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
