"""Measurement: parameters, FLOPs (two independent counters, cross-checked), per-layer profile,
throughput (warm-up, synchronised timing, median and spread, OOM fallback) and the device's
dense-matmul ceiling. The method follows timm's benchmark.py.

Conventions: a MAC is one multiply-add (fvcore's "flop"); GFLOPs = 2 x GMACs (FlopCounterMode).
Training FLOPs per image = 3 x forward FLOPs (forward + two backward matmuls per layer).
"""
from __future__ import annotations

import functools
import logging
import platform
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import nn

from .models import VGG, analytic_macs

FLOP_TOLERANCE = 0.01  # fvcore vs FlopCounterMode on conv+linear work


class FlopMismatch(AssertionError):
    pass


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


# --------------------------------------------------------------------------- device facts

def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available: use --device cpu")
    return dev


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall time of a region of device work: CUDA events on GPU, perf_counter on CPU; always synchronised."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        synchronize(self.device)
        if self.device.type == "cuda":
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1e3
        else:
            self.seconds = time.perf_counter() - self._t0
        return False


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int,
               steps_per_repeat: int = 1) -> list[float]:
    """Seconds per step for each repeat, after `warmup` un-timed steps."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        with Timer(device) as t:
            for _ in range(steps_per_repeat):
                step()
        times.append(t.seconds / steps_per_repeat)
    return times


def throughput(model: VGG, device: torch.device, batch_size: int, train: bool, warmup: int = 2,
               repeats: int = 5, amp_dtype: torch.dtype | None = None, channels_last: bool = True,
               min_batch: int = 1) -> dict:
    """Images/s of a training step (fwd+bwd+SGD step) or inference (fwd, no grad) on one fixed batch
    already on the device. On out-of-memory the batch is halved (down to min_batch) and the batch
    actually used is recorded."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9) if train else None
    n_cls = model.spec.num_classes
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
                        loss = nn.functional.cross_entropy(model(x), y)
                        loss.backward()
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    else:
                        with torch.no_grad():
                            model(x)

            with Timer(device) as warm:  # includes compilation / autotuning: reported apart
                for _ in range(warmup):
                    step()
            times = time_steps(step, device, 0, repeats)
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
    return {"images_per_s": statistics.median(ips), "images_per_s_min": min(ips), "images_per_s_max": max(ips),
            "batch_size": batch_size, "repeats": repeats, "warmup_s": warm.seconds,
            "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


@functools.lru_cache(maxsize=None)
def matmul_ceiling(device_str: str, dtype_name: str = "float32", n: int | None = None,
                   threads: int | None = None) -> float:
    """Dense matmul FLOP/s of this device (measured once per process and CPU thread count, which
    callers pass as `threads`): n x n @ n x n, median of 5; n = 2048 on CPU (172-179 GFLOP/s for
    n = 1024-4096 on the 2-core dev machine), 8192 on GPUs (small products do not reach peak)."""
    device, dtype = torch.device(device_str), getattr(torch, dtype_name)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_steps(lambda: torch.mm(a, b), device, warmup=2, repeats=5)
    return 2 * n**3 / statistics.median(times)


def utilisation(gflops_per_image: float, train_images_per_s: float, device: torch.device, dtype_name: str,
                train_gflops_per_image: float | None = None) -> dict:
    """Achieved training FLOP/s (3 x forward FLOPs per image: forward + two backward products per
    layer; the first layer's input gradient is not computed, so this slightly overstates; or the
    counted train_gflops_per_image of a model with frozen layers) and its fraction of the device's
    measured dense-matmul rate at this CPU thread count."""
    ceiling = matmul_ceiling(str(device), dtype_name, threads=torch.get_num_threads())
    per_image = 3 * gflops_per_image if train_gflops_per_image is None else train_gflops_per_image
    achieved = per_image * 1e9 * train_images_per_s
    return {"ceiling_gflop_per_s": ceiling / 1e9, "ceiling_dtype": dtype_name,
            "train_gflop_per_s": achieved / 1e9, "ceiling_fraction": achieved / ceiling}
