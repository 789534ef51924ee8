"""The device: which one (resolve_device, its index and model), its free memory, the math mode every
measurement and training step of a process shares, and timing work on it (synchronised; CUDA
events on the working GPU's stream). The lowest layer: everything that touches a device uses it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import math
import platform
import re
import time
from pathlib import Path
from typing import Callable

import torch

from .errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available: use --device cpu")
    return dev


def device_name(device: torch.device) -> str:
    """The hardware a measurement ran on, as the tables show it: the GPU's model, its index and how many
    GPUs the process saw; or the CPU's model and the torch threads."""
    if device.type == "cuda":
        index = cuda_index(device)
        return f"{torch.cuda.get_device_name(index)} (cuda:{index} of {torch.cuda.device_count()} visible)"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> str | None:
    """/proc/cpuinfo, read once per process (every cell's identity asks what auto amp runs)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The x86 feature flags of /proc/cpuinfo (or of the text given); empty where there are none."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
        if cpuinfo is None:
            return set()
    found = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    return set(found.group(1).split()) if found else set()


# The CPU's native bfloat16 matrix units, by their cpuinfo flag: AMX tiles (Sapphire Rapids and
# later Xeons: bf16 matmul ~7x float32, issue 25) and AVX512-BF16 dot products (Cooper Lake, AMD
# Zen 4 and later: ~2x; measured on a 2-core AMD EPYC, n = 2048: 172 -> 403 GFLOP/s).
BF16_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"))


def cpu_bf16_units(cpuinfo: str | None = None) -> str | None:
    """"AMX" or "AVX512-BF16" where this CPU (or the cpuinfo text given) multiplies bfloat16 natively,
    else None. Where /proc/cpuinfo says nothing (no Linux), torch's own probe of the CPU decides."""
    flags = cpu_flags(cpuinfo)
    if not flags and cpuinfo is None:
        probe = {"amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", None),
                 "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", None)}
        flags = {flag for flag, supported in probe.items() if supported is not None and supported()}
    return next((name for flag, name in BF16_UNITS if flag in flags), None)


def cuda_index(device: torch.device) -> int:
    """The index of a CUDA device; "cuda" without one is the current device. Some torch versions
    (2.2-2.4: mem_get_info) reject a device without an index, so CUDA calls get this integer."""
    return device.index if device.index is not None else torch.cuda.current_device()


def gpu_model(device: torch.device) -> str | None:
    """The GPU's model name (part of the identity of a CUDA cell: its throughput depends on it)."""
    return torch.cuda.get_device_name(cuda_index(device)) if device.type == "cuda" else None


def free_bytes(device: torch.device) -> int:
    return torch.cuda.mem_get_info(cuda_index(device))[0]


def total_bytes(device: torch.device) -> int:
    """The device's memory: the GPU's, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(cuda_index(device)).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def set_math_mode(device: torch.device) -> dict:
    """One math mode for every measurement and every training step of a process, set before the
    first one: cuDNN picks its fastest kernels (fixed shapes), and float32 matrix products and
    convolutions both use TF32 tensor cores on GPUs that have them (cuDNN convolutions do by default,
    cuBLAS products do not), so that the matmul ceiling and the model run in the same mode. On CPU,
    denormals flush to zero (tiny gradients as denormals slow x86 arithmetic many-fold), and freed
    memory stays in the process (keep_freed_memory). Returns the settings, for the record."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        keep_freed_memory()
    return math_mode(device)


def keep_freed_memory() -> bool:
    """glibc malloc keeps freed memory in the process: blocks up to 256 MiB come from the heap, not
    each from its own mmap, and the heap is not trimmed. By default every CPU training step gave its
    activations back to the kernel and faulted them in again, zeroed: VGG-A-BN width 1/4, batch 128,
    bf16, 1 thread (AMD EPYC, 2026-12-06) took 2,000-7,400 minor page faults a step and 59-80 ms of
    CPU; with this, 0-6 faults and 54-59 ms. The data path's own allocations were faulted the same
    way: the epoch over the loader cost 4-10% more than the steps on one batch, 1-4% with this.
    False where this is not glibc (the setting is then the allocator's own)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def math_mode(device: torch.device) -> dict:
    tf32 = (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            and torch.cuda.get_device_capability(cuda_index(device))[0] >= 8)  # TF32 units: Ampere and later
    return {"float32": "tf32" if tf32 else "ieee", "cudnn_benchmark": torch.backends.cudnn.benchmark}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall time of a region of device work: CUDA events on GPU, perf_counter on CPU; always synchronised.

    The events are recorded on the current stream *of the timed device*: an event recorded without a
    stream goes on the current device's stream, which for work on cuda:1 is GPU 0's, not the one that
    does the work."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        synchronize(self.device)
        if self.device.type == "cuda":
            self._stream = torch.cuda.current_stream(self.device)
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record(self._stream)
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record(self._stream)
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1e3
        else:
            self.seconds = time.perf_counter() - self._t0
        return False


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int,
               steps_per_repeat: int = 1) -> list[float]:
    """Seconds per step for each repeat (a window of `steps_per_repeat` steps, one sync per window),
    after `warmup` un-timed steps."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        with Timer(device) as t:
            for _ in range(steps_per_repeat):
                step()
        times.append(t.seconds / steps_per_repeat)
    return times


def window_steps(step: Callable[[], None], device: torch.device, min_window_s: float, min_steps: int = 1) -> int:
    """Steps per timed window so that a window lasts about `min_window_s` (one step timed to
    calibrate): one step is too short to time against the noise of a shared machine, so each repeat
    times many (timm's benchmark times 40 per run)."""
    with Timer(device) as t:
        step()
    return max(min_steps, math.ceil(min_window_s / max(t.seconds, 1e-9)))
