"""Profiles: the baseline settings of a run, one per scale. An ablation case changes a few fields
of the baseline (see grid.Case); command-line options override the profile.

smoke          the embedded synthetic dataset, width 1/8, 2 epochs: every ablation in minutes on a
               2-core CPU, no network. Checks the machinery, not the science.
cpu            the real CIFAR-10 on a laptop: every ablation, 3 seeds, in about 40 minutes on 2 CPU cores (below).
cifar10        CIFAR-10 at full width with the linear head of the common CIFAR VGG code.
tiny-imagenet  64x64, 200 classes (the setting of Tiny ImageNet VGG experiments).
imagenet       the paper's setting: 224x224, 1000 classes, the 4096-4096 head, SGD 0.01 with the
               divide-by-10-on-plateau schedule, batch 256, weight decay 5e-4, 74 epochs, crops and
               flips with the random RGB colour shift (section 3.1). The other profiles keep their
               datasets' usual augmentation (crops and flips; smoke none): no colour shift.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .data import DataSpec
from .models import ModelSpec
from .trainer import TrainSpec


def scale_px(paper_s: int, image_size: int) -> int:
    """A scale of the paper (S or Q, in its pixels at a 224 crop) at another crop size: the paper's
    own at 224, proportional below (a 32-pixel CIFAR crop: S = 256 -> 37, 384 -> 55, 512 -> 73;
    Tiny ImageNet's 64: 73, 110, 146). Below 224 the rescaled image is larger than the original,
    an upsampling (CIFAR's originals are 32 pixels: no larger copy exists)."""
    return round(paper_s * image_size / 224)


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
    # The multi-crop evaluation's grid side (evaluation.py): the paper's 5 x 5 (x 2 mirrors) crops.
    crop_grid: int = 5
    description: str = field(default="", compare=False)

    def scale_px(self, paper_s: int) -> int:
        return scale_px(paper_s, self.model.image_size)

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)


# The cpu profile, chosen by measurement on a 2-core CPU (2026-11-24; docs/cpu-run.md):
# the most learning per CPU minute with the same recipe for every case. Side by side on A, D, E
# (depth, 6 epochs, batch 64, SGD 0.02 cosine, test on 5,000): width 1/8 on 10,000 images reached
# 47 / 39 / 36 % test top-1 in 84 s for the three cells; width 1/4 on 5,000 images, about the same
# compute (98 s), reached 16 (stalled) / 38 / 34 %. Width 1/8 on 10,000 then trained every case tried
# of depth, batchnorm and kernel (A, B, D, E; plain, BN, large kernels: 36-57 %) with no stall; the only stalls were the init ablation's
# normal (std 0.01) and Xavier nets, whose train loss stayed at ln 10 = 2.303 for all 6 epochs when let run
# (a finding of that ablation, not a short budget: the paper's reason to start deep nets from A).
# The full `pytest ablations --profile cpu --seeds 3` then took 38 minutes on the 2-core machine, every
# cell ok but the init ablation's normal (std 0.01), Xavier and from-A nets (and the A they start from); the
# validation curves still rise at the end (2.1 points per epoch), which the report says.
# Test on 5,000 images (a standard error of about 0.7 points at 50 %), val the 5,000 held out.
CPU_RECIPE = dict(width=0.125, train_subset=10_000, test_subset=5_000, epochs=6, batch_size=64)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        # Test on 500 of the 2,000 test images (a machinery check, not evidence): the evaluation
        # ablation scores every test image at up to 73 px, several scales and crops, 2-3x the
        # training of its cell (`pytest ablations`, 2-core AMD EPYC: 197 s on all 2,000, 173 s on 1,000)
        "smoke", DataSpec("synthetic", 32, test_subset=500),
        ModelSpec(width=0.125, num_classes=10, image_size=32, head="linear"),
        TrainSpec(epochs=2, batch_size=64, lr=None, augment=False),
        bench_batch=32, bench_warmup=1, bench_repeats=3, bench_window_s=0.05, cpu_threads=1,
        # 2 x 2 crops: the same code as 5 x 5 at 8 views a scale instead of 50, where 50 cost 6x the
        # 2 epochs they evaluate (500 test images: 46 s against 8 s at 2 x 2, 2-core AMD EPYC, loaded)
        crop_grid=2,
        description="embedded synthetic glyphs, width 1/8, 2 epochs (CPU, minutes)"),
    "cpu": Profile(
        "cpu", DataSpec("cifar10", 32, train_subset=CPU_RECIPE["train_subset"], test_subset=CPU_RECIPE["test_subset"]),
        ModelSpec(width=CPU_RECIPE["width"], num_classes=10, image_size=32, head="linear"),
        TrainSpec(epochs=CPU_RECIPE["epochs"], batch_size=CPU_RECIPE["batch_size"]),
        bench_batch=64, bench_warmup=1, bench_repeats=3, bench_window_s=0.25, tune_by_default=True,
        description="real CIFAR-10 (10,000 train, 5,000 test), width 1/8, 6 epochs: every ablation, 3 seeds, "
                    "in about 40 minutes on 2 CPU cores"),
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
        TrainSpec(epochs=74, batch_size=256, lr=0.01, schedule="plateau", weight_decay=5e-4, colour_shift=True),
        bench_batch=64, description="ImageNet-1k, the paper's setting (multi-GPU)"),
}
