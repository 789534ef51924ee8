"""Measurement: parameters, FLOPs (two independent counters, cross-checked), per-layer profile,
the environment's versions, and throughput (warm-up, synchronised timing of windows of many steps,
median and spread, OOM fallback). The method follows timm's benchmark.py. The device's ceiling
and the achieved fraction of it are in ceiling.py.

Conventions: a MAC is one multiply-add (fvcore's "flop"); GFLOPs = 2 x GMACs (FlopCounterMode).
Training FLOPs per image = 3 x forward FLOPs (forward + two backward matmuls per layer).
"""
from __future__ import annotations

import logging
import os
import platform
import statistics
import warnings

import torch
from torch import nn

from . import compiled
from .errors import UsageError
from .device import Timer, is_oom, time_steps, total_bytes, window_steps
from .models import VGG, ModelSpec, activation_values, analytic_macs, analytic_params

FLOP_TOLERANCE = 0.01  # fvcore vs FlopCounterMode on conv+linear work


class FlopMismatch(AssertionError):
    pass


class TooLarge(UsageError):
    """A cell or benchmark that cannot fit this machine's memory: refused before allocating."""


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_fits(spec: ModelSpec, batch: int, device: torch.device, data_bytes: int = 0, what: str = "") -> None:
    """TooLarge, before anything is allocated, when a training step of `spec` at `batch` (a lower
    bound from the spec alone: its activations, float32 weights with their gradient and optimiser
    state) plus `data_bytes` held in memory cannot fit the device's memory (RAM on the CPU, where
    the data lives too). Says what to make smaller."""
    activations = 4 * batch * activation_values(spec)
    weights = 4 * 3 * analytic_params(spec)
    on_device = activations + weights + (data_bytes if device.type == "cpu" else 0)
    ram = total_bytes(torch.device("cpu"))
    have = total_bytes(device)
    if on_device <= have and data_bytes <= ram:
        return
    parts = [f"a training step at batch {batch} needs at least {_gb(activations + weights)}"]
    if data_bytes:
        parts.append(f"the data at {spec.image_size}px {_gb(data_bytes)}")
    where = f"{device.type} memory" if device.type != "cpu" else "RAM"
    raise TooLarge(f"{what or spec.name} at {spec.image_size}px: {' and '.join(parts)}; this machine has "
                   f"{_gb(have)} of {where}: use a smaller --image-size, --batch-size or --width")


def count_params(model: nn.Module) -> dict[str, int]:
    return {"params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def _dummy(model: VGG, batch: int = 1) -> torch.Tensor:
    s = model.spec.image_size
    p = next(model.parameters())
    return torch.zeros(batch, 3, s, s, device=p.device, dtype=p.dtype)


def _fvcore_analysis(model: VGG):
    """fvcore's FlopCountAnalysis of one dummy image, quiet (its import calls the deprecated
    torch.jit.script; LRN/pool are "unsupported ops" that do no conv/linear work)."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        fca = FlopCountAnalysis(model, _dummy(model))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fca.total()  # run the trace now, inside the warning filter
    return fca


def fvcore_macs(model: VGG) -> dict[str, float]:
    """fvcore's FlopCountAnalysis, by operator; conv+linear separated from the rest (BN...)."""
    was_training = model.training
    model.eval()
    by_op = dict(_fvcore_analysis(model).by_operator())
    model.train(was_training)
    conv_linear = sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul", "mm"))
    return {"conv_linear": float(conv_linear), "total": float(sum(by_op.values())), "by_operator": by_op}


def torch_flops(model: VGG) -> float:
    """PyTorch's FlopCounterMode total for one forward image (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(_dummy(model))
    model.train(was_training)
    return float(counter.get_total_flops())


def train_step_flops(model: VGG) -> float:
    """FlopCounterMode total of one training step's forward + backward for one image. With frozen
    layers (transfer modes) the backward skips their weight gradients: 3 x forward overstates it."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(_dummy(model)).sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return float(counter.get_total_flops())


def count_flops(model: VGG) -> dict[str, float]:
    """GMACs (fvcore), GFLOPs (FlopCounterMode) and the analytic count, cross-checked.

    Raises FlopMismatch if the two counters disagree by more than 1% on conv+linear work,
    or if either disagrees with the analytic count from the spec.
    """
    fv = fvcore_macs(model)
    tf = torch_flops(model)
    analytic = analytic_macs(model.spec)["total"]
    if abs(tf / (2 * fv["conv_linear"]) - 1) > FLOP_TOLERANCE:
        raise FlopMismatch(f"{model.spec.name}: fvcore {fv['conv_linear']:.4g} MACs vs FlopCounterMode "
                           f"{tf:.4g} FLOPs (expected 2x) disagree by more than {FLOP_TOLERANCE:.0%}")
    if abs(fv["conv_linear"] / analytic - 1) > FLOP_TOLERANCE:
        raise FlopMismatch(f"{model.spec.name}: measured {fv['conv_linear']:.6g} MACs != analytic {analytic:.6g}")
    return {"gmacs": fv["conv_linear"] / 1e9, "gflops": tf / 1e9, "analytic_gmacs": analytic / 1e9,
            "fvcore_total_gmacs": fv["total"] / 1e9}


def layer_table(model: VGG) -> list[dict]:
    """One row per leaf module: name, type, output shape, params, MACs (fvcore, by module)."""
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
             for n, m in model.named_modules() if not list(m.children())]
    model.eval()
    with torch.no_grad():
        model(_dummy(model))
    for h in hooks:  # before fvcore's trace, whose shapes are traced values
        h.remove()
    by_module = _fvcore_analysis(model).by_module()
    rows = []
    for n, m in model.named_modules():
        if list(m.children()):
            continue
        rows.append({"layer": n, "type": type(m).__name__, "output": "x".join(map(str, shapes.get(n, ()))),
                     "params": sum(p.numel() for p in m.parameters()),
                     "macs": int(by_module.get(n, 0))})
    return rows


# --------------------------------------------------------------------------- environment

def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("torchvision", "fvcore", "datasets", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    out["cuda"] = torch.version.cuda or "none"
    out["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"
    return out


def throughput(model: VGG, device: torch.device, batch_size: int, train: bool, warmup: int = 2,
               repeats: int = 5, amp_dtype: torch.dtype | None = None, channels_last: bool = True,
               min_batch: int = 1, min_window_s: float = 0.0, compile_backend: str | None = None,
               optimizer=None) -> dict:
    """Images/s of a training step (fwd+bwd+SGD step) or inference (fwd, no grad) on one fixed batch
    already on the device: median, min and max over `repeats` windows of several steps (each at least
    `min_window_s` long). With `compile_backend` the model is torch.compiled first (as the trainer
    does). On out-of-memory the batch is halved (down to min_batch) and the batch actually used is
    recorded. optimizer(model): the training step's optimiser (default: SGD with momentum)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    model.train(train)
    make_opt = optimizer or (lambda m: torch.optim.SGD(m.parameters(), lr=1e-6, momentum=0.9))
    opt = make_opt(model) if train else None
    run_model = compiled.compile_model(model, compile_backend) if compile_backend else model
    n_cls, load = model.spec.num_classes, os.getloadavg()[0]
    while True:
        try:
            x = torch.randn(batch_size, 3, model.spec.image_size, model.spec.image_size,
                            device=device).contiguous(memory_format=fmt)
            y = torch.randint(0, n_cls, (batch_size,), device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

            def step():
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    if train:
                        loss = nn.functional.cross_entropy(run_model(x), y)
                        loss.backward()
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    else:
                        with torch.no_grad():
                            run_model(x)

            with Timer(device) as warm:  # includes compilation / autotuning: reported apart
                for _ in range(warmup):
                    step()
            window = window_steps(step, device, min_window_s)
            times = time_steps(step, device, 0, repeats, window)
            break
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not is_oom(err) or batch_size // 2 < min_batch:
                raise
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            batch_size //= 2
    ips = [batch_size / t for t in times]
    median = statistics.median(ips)
    return {"images_per_s": median, "images_per_s_min": min(ips), "images_per_s_max": max(ips),
            "spread": (max(ips) - min(ips)) / median, "batch_size": batch_size, "repeats": repeats,
            "steps_per_repeat": window, "warmup_s": warm.seconds, "load_avg_1min": load,
            "compiled": compiled.report() if compile_backend else None,
            "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
