"""Profiles: the baseline settings of a run, one per scale. An ablation case changes a few fields
of the baseline (see grid.Case); command-line options override the profile.

smoke          the embedded synthetic dataset, width 1/8, 2 epochs: every ablation in minutes on a
               2-core CPU, no network. Checks the machinery, not the science.
cifar10        CIFAR-10 at full width with the linear head of the common CIFAR VGG code.
tiny-imagenet  64x64, 200 classes (the setting of Tiny ImageNet VGG experiments).
imagenet       the paper's setting: 224x224, 1000 classes, the 4096-4096 head, SGD 0.01 with the
               divide-by-10-on-plateau schedule, batch 256, weight decay 5e-4, 74 epochs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .data import DataSpec
from .models import ModelSpec
from .trainer import TrainSpec


@dataclass(frozen=True)
class Profile:
    name: str
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    # Throughput measurement: batch, warm-up steps, timed repeats, each a window of steps lasting at
    # least bench_window_s (one step is too short to time on a shared machine; timm times 40).
    bench_batch: int = 64
    bench_warmup: int = 2
    bench_repeats: int = 5
    bench_window_s: float = 1.0
    # CPU float results depend on the number of threads (reduction order): a profile that pins it
    # gives the same numbers serially and under pytest-xdist. None: the process's threads.
    cpu_threads: int | None = None
    # Learning-rate tuning (tuning.py): the grid around each case's rate (x these factors: five
    # log-spaced points over two decades), and whether ablations that compare methods are tuned
    # by default (where the budget allows 5 extra runs per case).
    lr_grid_factors: tuple[float, ...] = (0.1, 0.316, 1.0, 3.16, 10.0)
    tune_by_default: bool = False
    description: str = field(default="", compare=False)

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", DataSpec("synthetic", 32),
        ModelSpec(width=0.125, num_classes=10, image_size=32, head="linear"),
        TrainSpec(epochs=2, batch_size=64, lr=None, augment=False),
        bench_batch=32, bench_warmup=1, bench_repeats=3, bench_window_s=0.05, cpu_threads=1,
        description="embedded synthetic glyphs, width 1/8, 2 epochs (CPU, minutes)"),
    "cifar10": Profile(
        "cifar10", DataSpec("cifar10", 32),
        ModelSpec(width=1.0, num_classes=10, image_size=32, head="linear"),
        TrainSpec(epochs=30, batch_size=128),
        bench_batch=128, tune_by_default=True, description="CIFAR-10, full width, 30 epochs (GPU-sized)"),
    "tiny-imagenet": Profile(
        "tiny-imagenet", DataSpec("tiny-imagenet", 64),
        ModelSpec(width=1.0, num_classes=200, image_size=64, head="compact"),
        TrainSpec(epochs=30, batch_size=128),
        bench_batch=128, tune_by_default=True, description="Tiny ImageNet 64x64, 200 classes (GPU-sized)"),
    "imagenet": Profile(
        "imagenet", DataSpec("imagenet", 224),
        ModelSpec(width=1.0, num_classes=1000, image_size=224, head="paper"),
        TrainSpec(epochs=74, batch_size=256, lr=0.01, schedule="plateau", weight_decay=5e-4),
        bench_batch=64, description="ImageNet-1k, the paper's setting (multi-GPU)"),
}
