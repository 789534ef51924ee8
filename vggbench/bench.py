"""Benchmarks measured side by side in one process: where does an epoch's time go?

`pipeline`: one training epoch on the same model, data, device and batch size, three ways:
  (a) vggbench  - uint8 data resident on the device, batched augmentation, no per-step sync;
  (b) typical   - torchvision DataLoader over PIL images (RandomCrop(32, padding=4),
                  RandomHorizontalFlip, ToTensor, Normalize) and `.item()` after every step,
                  as most VGG write-ups do;
  (c) ceiling   - the same number of training steps on one batch already on the device: the
                  model's own speed, no data movement at all.
  Reported: the three times and the ratios a/b (< 1: vggbench is faster) and a/c (>= 1: how
  close the data path comes to the model's speed).

`model_throughput`: training and inference images/s of one model at one batch size, with the
achieved FLOP/s and its fraction of the device's measured dense-matmul ceiling.
"""
from __future__ import annotations

import copy
import statistics
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from . import records
from .data import DataSpec, load_data
from .loader import DeviceLoader
from .device import Timer, cpu_bf16_units, device_name, resolve_device, set_math_mode
from .measure import check_fits, count_flops, versions
from .models import ModelSpec, build_model
from .speed import model_speed
from .trainer import TrainSpec, amp_name, autocast_dtype, make_optimizer


def _step(model, opt, x, y, amp):
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def epoch_vggbench(model, opt, data, batch_size, device, amp) -> int:
    loader = DeviceLoader(data.train_x, data.train_y, batch_size, data.mean, data.std, device, train=True)
    steps = 0
    loss_sum = torch.zeros((), device=device)
    for x, y in loader:
        loss_sum += _step(model, opt, x, y, amp).detach()
        steps += 1
    loss_sum.item()  # the epoch's one sync
    return steps


class _PILDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does: a PIL image per sample, transformed per sample."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()  # N x H x W x 3 uint8, as CIFAR10.data
        self.y = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def epoch_typical(model, opt, data, batch_size, device, amp, workers: int = 2) -> int:
    import torchvision.transforms as T

    size = data.image_size
    tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(data.mean, data.std)])
    loader = torch.utils.data.DataLoader(_PILDataset(data.train_x, data.train_y, tf), batch_size=batch_size,
                                         shuffle=True, drop_last=True, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    steps = 0
    total = 0.0
    for x, y in loader:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        total += _step(model, opt, x, y.to(device), amp).item()  # the per-step sync of typical code
        steps += 1
    return steps


def epoch_ceiling(model, opt, data, batch_size, device, amp, steps: int) -> int:
    x = torch.randn(batch_size, 3, data.image_size, data.image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, data.num_classes, (batch_size,), device=device)
    loss_sum = torch.zeros((), device=device)
    for _ in range(steps):
        loss_sum += _step(model, opt, x, y, amp).detach()
    loss_sum.item()
    return steps


def pipeline(model_spec: ModelSpec, data_spec: DataSpec, batch_size: int = 128, device: str = "auto",
             workers: int = 2, out: str | Path | None = "results/pipeline.csv", warmup_steps: int = 3,
             repeats: int = 3, amp: str = "auto") -> pd.DataFrame:
    dev = resolve_device(device)
    set_math_mode(dev)  # as the trainer does
    data = load_data(data_spec)
    model_spec = model_spec.replace(num_classes=data.num_classes, image_size=data.image_size)
    train_spec = TrainSpec(batch_size=batch_size, amp=amp)
    amp = autocast_dtype(train_spec, dev)  # the three variants in one dtype
    torch.manual_seed(0)
    base = build_model(model_spec).to(dev, memory_format=torch.channels_last).train()

    def fresh():
        model = copy.deepcopy(base)
        opt = make_optimizer(model, train_spec)
        # warm-up (allocator, cuDNN autotuning, oneDNN primitive caches) outside the timing
        epoch_ceiling(model, opt, data, batch_size, dev, amp, warmup_steps)
        return model, opt

    # The three variants alternate, `repeats` times: drift of the machine hits all three alike.
    runs = {"vggbench": [], "typical": [], "ceiling": []}
    steps = {}
    for _ in range(repeats):
        for name in runs:
            model, opt = fresh()
            with Timer(dev) as t:
                if name == "vggbench":
                    steps[name] = epoch_vggbench(model, opt, data, batch_size, dev, amp)
                elif name == "typical":
                    steps[name] = epoch_typical(model, opt, data, batch_size, dev, amp, workers)
                else:
                    steps[name] = epoch_ceiling(model, opt, data, batch_size, dev, amp, steps["vggbench"])
            runs[name].append(t.seconds)
    times = {name: statistics.median(v) for name, v in runs.items()}
    row = {"model": model_spec.name, "dataset": data.name, "train_images": len(data.train_y),
           "batch_size": batch_size, "steps": steps["vggbench"], "device": device_name(dev),
           "amp": amp_name(train_spec, dev), "dataloader_workers": workers,
           "repeats": repeats, "vggbench_s": times["vggbench"], "typical_s": times["typical"],
           "ceiling_s": times["ceiling"],
           **{f"{name}_s_all": " ".join(f"{t:.3f}" for t in v) for name, v in runs.items()},
           "ratio_a_over_b": times["vggbench"] / times["typical"],
           "ratio_a_over_c": times["vggbench"] / times["ceiling"],
           "vggbench_images_per_s": steps["vggbench"] * batch_size / times["vggbench"],
           "typical_images_per_s": steps["typical"] * batch_size / times["typical"],
           "ceiling_images_per_s": steps["ceiling"] * batch_size / times["ceiling"],
           **{f"version_{k}": v for k, v in versions().items()}}
    df = pd.DataFrame([row])
    if out is not None:
        records.write_table(df, out)
    return df


def model_throughput(model_spec: ModelSpec, batch_size: int, device: str = "auto", amp: str = "auto",
                     channels_last: bool = True, compile: bool = False, warmup: int = 3, repeats: int = 10,
                     window_s: float = 1.0) -> dict:
    """Training and inference images/s (median, min, max over `repeats` windows of at least
    `window_s` seconds), achieved GFLOP/s and fraction of the device's ceiling."""
    dev = resolve_device(device)
    set_math_mode(dev)
    spec = TrainSpec(amp=amp, channels_last=channels_last, compile=compile)
    check_fits(model_spec, batch_size, dev)  # one line, not the kernel's OOM killer
    model = build_model(model_spec)
    gflops = count_flops(model)["gflops"]
    out = {"model": model_spec.name, "image_size": model_spec.image_size, "device": device_name(dev),
           "dtype": amp_name(spec, dev), "amp": amp, "channels_last": channels_last,
           "cpu_bf16_units": cpu_bf16_units() if dev.type == "cpu" else None,
           "compile": compile, "gflops_per_image": gflops}
    out.update(model_speed(model, dev, batch_size, spec, warmup, repeats, window_s, gflops), versions=versions())
    for kind in ("train", "infer"):  # warm-up = compile (graph capture happens on the first calls) + autotuning
        out[kind]["compile_s"] = out[kind]["warmup_s"]
    return out
