"""The device's compute ceiling and the fraction of it a model achieves.

The ceiling is the best dense-matmul rate measured on this device at this dtype, math mode and CPU
thread count, over products of growing size (a single size is not a bound: on a 2-core CPU a 2048²
product ran at 119-127 GFLOP/s and a 4096² one at 149-154, while VGG-D-BN training reached 156).
Sizes grow while the rate still improves by 10%. Where the CPU's instruction-set peak is knowable
(its maximum clock is readable) it is recorded beside it, with the formula. A model measured above
the ceiling means the ceiling is wrong, not that the model is fast: the fraction is then clipped to
1 and flagged (`ceiling_exceeded`), with the unclipped value kept.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .device import cpu_flags, is_oom, math_mode, time_steps

SIZES = {"cpu": (1024, 2048, 4096), "cuda": (4096, 8192, 16384)}
GROWTH = 1.10  # try the next size only while the rate still grew by 10%


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    """FLOP/s of n x n @ n x n: the fastest of `repeats` after one warm-up product."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / min(time_steps(lambda: torch.mm(a, b), device, warmup=1, repeats=repeats))


def isa_peak(threads: int, cpuinfo: str | None = None, max_khz: int | None = None) -> dict | None:
    """float32 FLOP/s upper bound of `threads` x86 cores from the instruction set: threads x lanes
    (16 with AVX-512, 8 with AVX2) x 2 (FMA) x 2 FMA units (the most any x86 core has) x the maximum
    clock. None where the maximum clock is not readable (many VMs): /proc/cpuinfo's MHz is the current
    clock, not a bound."""
    try:
        cpuinfo = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
        if max_khz is None:
            max_khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
    except (OSError, ValueError):
        return None
    flags = cpu_flags(cpuinfo)
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else None
    if lanes is None:
        return None
    per_s = threads * lanes * 2 * 2 * max_khz * 1e3
    return {"gflop_per_s": per_s / 1e9,
            "method": f"{threads} threads x {lanes} fp32 lanes x 2 (FMA) x 2 FMA units x {max_khz / 1e6:.2f} GHz"}


@functools.lru_cache(maxsize=None)
def ceiling(device_str: str, dtype_name: str = "float32", threads: int | None = None,
            sizes: tuple[int, ...] | None = None) -> dict:
    """The ceiling of a device (measured once per process, dtype, math mode and CPU thread count,
    which callers pass as `threads`): {"gflop_per_s", "method", "matmul_gflop_per_s": {n: rate},
    "isa_peak_gflop_per_s", "isa_method"}."""
    device, dtype = torch.device(device_str), getattr(torch, dtype_name)
    rates: dict[int, float] = {}
    for n in sizes or SIZES[device.type]:
        try:
            rate = matmul_rate(device, dtype, n)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not is_oom(err) or not rates:
                raise
            break
        grew = not rates or rate >= GROWTH * max(rates.values())
        rates[n] = rate
        if not grew:
            break
    best = max(rates, key=rates.get)
    isa = isa_peak(threads or torch.get_num_threads()) if device.type == "cpu" and dtype == torch.float32 else None
    return {"gflop_per_s": rates[best] / 1e9,
            "method": f"fastest {dtype_name} n x n matmul over n = {', '.join(map(str, rates))} "
                      f"(best of 3 each): n = {best}",
            "matmul_gflop_per_s": {n: r / 1e9 for n, r in rates.items()},
            "isa_peak_gflop_per_s": isa and isa["gflop_per_s"], "isa_method": isa and isa["method"]}


def utilisation(gflops_per_image: float, train_images_per_s: float, device: torch.device, dtype_name: str,
                train_gflops_per_image: float | None = None) -> dict:
    """Achieved training FLOP/s (3 x forward FLOPs per image: forward + two backward products per
    layer; the first layer's input gradient is not computed, so this slightly overstates; or the
    counted train_gflops_per_image of a model with frozen layers) and its fraction of the device's
    ceiling at this dtype, math mode and CPU thread count (at most 1: see the module doc)."""
    top = ceiling(str(device), dtype_name, threads=torch.get_num_threads())
    per_image = 3 * gflops_per_image if train_gflops_per_image is None else train_gflops_per_image
    achieved = per_image * 1e9 * train_images_per_s
    fraction = achieved / (top["gflop_per_s"] * 1e9)
    return {"ceiling_gflop_per_s": top["gflop_per_s"], "ceiling_dtype": dtype_name,
            "ceiling_math_mode": math_mode(device)["float32"], "ceiling_method": top["method"],
            "ceiling_isa_peak_gflop_per_s": top["isa_peak_gflop_per_s"], "ceiling_isa_method": top["isa_method"],
            "train_gflop_per_s": achieved / 1e9, "ceiling_fraction": min(fraction, 1.0),
            "ceiling_exceeded": fraction > 1, "ceiling_fraction_unclipped": fraction}
