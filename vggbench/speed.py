"""The speed of the model a cell trains: training and inference images/s and the achieved fraction
of the device's ceiling, measured as the trainer runs it (same autocast dtype, memory format,
torch.compile and math mode). One implementation for the cells (run.py) and `vggbench bench
throughput` (bench.py)."""
from __future__ import annotations

import copy

import torch

from . import compiled
from .ceiling import utilisation
from .device import math_mode
from .measure import throughput
from .trainer import TrainSpec, amp_name, autocast_dtype, make_optimizer


def model_speed(model: torch.nn.Module, device: torch.device, batch: int, spec: TrainSpec, warmup: int,
                repeats: int, window_s: float, gflops: float, train_gflops: float | None = None) -> dict:
    """{"train": throughput, "infer": throughput, "math_mode", **utilisation}; each on a fresh copy of
    `model` with the trainer's optimiser (at a rate too small to move the weights), compiled when
    spec.compile (compile and autotuning time is the warm-up, reported apart)."""
    amp = autocast_dtype(spec, device)
    backend = compiled.backend() if spec.compile else None
    out = {}
    for kind, is_train in (("train", True), ("infer", False)):
        out[kind] = throughput(copy.deepcopy(model), device, batch, train=is_train, warmup=warmup, repeats=repeats,
                               amp_dtype=amp, channels_last=spec.channels_last, min_window_s=window_s,
                               compile_backend=backend, optimizer=lambda m: make_optimizer(m, spec.replace(lr=1e-6)))
    dtype = amp_name(spec, device)  # the ceiling in the dtype that runs
    out["math_mode"] = math_mode(device)
    out.update(utilisation(gflops, out["train"]["images_per_s"], device, dtype, train_gflops))
    return out
