"""Profiles: the baseline settings of a run, one per scale. An ablation case changes a few fields
of the baseline (see grid.Case); command-line options override the profile.

smoke          the embedded synthetic dataset, width 1/8, 2 epochs: every ablation in minutes on a
               2-core CPU, no network. Checks the machinery, not the science.
cpu            the real CIFAR-10 on a laptop: every ablation, 3 seeds, about an hour on 2 CPU cores (below).
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
    # Cells at once when the command line gives no -n: "auto" asks pytest-xdist for `-n auto` (one
    # worker per CPU core without CUDA, launch.auto_workers). On a CPU, one 1-thread cell per core
    # trains more per minute than one cell on every core (the cpu profile's comment measures it).
    workers: str | None = None
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


# The cpu profile, chosen by measurement on a 2-core CPU: the most learning per CPU minute with the
# same recipe for every case, long enough that the report calls the run adequate (report/budget.py:
# val top-1 gaining under 0.5 points per epoch over the last 3, median over the cells).
# 2026-11-24 (docs/cpu-run.md): side by side on A, D, E (6 epochs, batch 64, SGD 0.02
# cosine, test on 5,000), width 1/8 on 10,000 images reached 47 / 39 / 36 % test top-1 in 84 s for
# the three cells; width 1/4 on 5,000 images, about the same compute (98 s), 16 (stalled) / 38 / 34 %.
# The full `pytest ablations --profile cpu --seeds 3` at 6 epochs (float32) took 38 minutes, every
# cell ok but the init ablation's std 0.01, Xavier and from-A nets, and not adequate: val still rising
# 2.1 points per epoch at the end.
# 2026-12-06 (issue 24), the same data and width, no BN, Kaiming, SGD 0.02 cosine, bf16 autocast (the
# default --amp auto on this CPU), seed 0, 1 torch thread on a shared machine at load 3-12; val top-1
# per epoch, gain = points per epoch over the last 3:
#   D, 15 epochs: 16.8 23.1 30.6 27.3 31.7 37.7 40.6 42.4 41.3 44.9 47.8 48.2 49.5 50.0 50.0: gain 0.60 (not flat)
#   E, 18 epochs: 22.5 27.1 30.1 27.7 29.4 36.5 34.5 40.1 41.1 43.3 44.7 46.5 47.3 48.8 48.6 49.8 50.0 49.8: gain 0.40
#   D, 18 epochs: 17.9 23.4 30.5 30.1 30.2 36.7 35.6 40.1 43.2 42.6 46.9 48.1 48.4 48.3 48.8 51.0 51.3 51.4: gain 0.86
#   D, 18 epochs, seed 1: 21.1 29.0 29.3 28.4 33.7 37.2 42.7 43.3 43.5 47.4 48.0 46.2 48.9 50.4 50.9 51.1 52.0 51.8: gain 0.31
#   A, 18 epochs: 32.1 35.4 41.1 40.3 38.7 46.6 47.7 49.2 49.3 50.5 52.6 52.4 54.6 54.7 55.0 55.9 56.2 56.0: gain 0.35
#   D Adam 0.001, 18 epochs: 29.4 33.4 38.2 39.6 37.4 44.9 46.1 48.4 47.3 48.2 50.2 50.1 51.2 52.1 52.1 52.3 52.8 52.9: gain 0.27
#   (issue 24, float32: A and D at 18 epochs gained 0.30 and 0.15.) The rule takes the median over the
#   cells: 0.35 here at 18 epochs, 15 leave D rising. One more hazard: D at 20 epochs, seed 0, died in its
#   first epoch (train loss 2.2955, then 2.3039 = ln 10 for 3 more epochs: a stalled cell in the depth
#   ablation, which makes the whole run not adequate), as did D on 3,000 images; the same D with the
#   global gradient norm clipped at 1 trained (2.205, 1.94, 1.83 ...; 20 epochs, gain 0.07). Clipped, at
#   18 epochs: D 22.8 33.9 35.8 38.5 39.1 43.1 42.1 46.4 45.1 47.5 48.4 49.9 49.4 49.9 50.3 50.5 50.7 51.0:
#   gain 0.23 (test 51.3, unclipped 50.4); E 25.6 29.3 32.5 35.9 31.8 39.3 40.7 43.4 42.2 45.7 45.1 47.4
#   47.5 47.2 47.9 47.4 48.0 47.8: gain -0.05 (test 48.5, unclipped 49.5). So 18 epochs, clipped at 1:
#   the same learning, without the early deaths a 3-seed run of every ablation would almost surely hit.
# Cost, quiet machine, 2 threads: the 6-epoch run's 2,289 s were 6 evaluation-ablation cells (about
# 150 s each, fixed) and about 520 cell-epochs at about 2.1 s (plus about 3 s a cell for throughput
# and test); bf16 took 0.70-0.78x the float32 time of the same D epochs, side by side. At 18 epochs:
# 117 trainings (102 cells, 15 tuning), of which about 34 stop at epoch 2 as stalled (the init
# ablation's 21, half the tuning grid, pitfalls' Adagrad at 0.01), so about 1,600 cell-epochs:
# 1,600-1,720 x 2.1 x 0.75 + 117 x 3 + 900 x 0.75 = 3,500-3,750 s, about an hour, a few % more for the
# clipping (about 81 minutes if bf16 saved nothing). Quiet machine only: at load 8-12 a 2-thread step
# is several times slower (docs/measurement.md, issue 25). The tuning stays: without it Adam and Adagrad are
# compared at rates picked for other nets (Adagrad's 0.01 stalled D here), for about 10% of the run.
# That estimate was wrong: on a quiet machine (2026-12-06, commit 95b034f) the 18-epoch cells took 38 s
# (A), 46-53 s (A-BN), 53-66 s (D) and 96 s (D-BN), so the whole run was about 110 minutes (below).
# The init ablation's A from std 0.01 stays at ln 10 at this scale whatever was tried (A, 10,000
# images, 8 epochs, train loss 2.3026-2.3036 and val 10-11 % in every epoch of each): the compact
# head (64-64 at width 1/8), the paper's 4096-4096 head (512-512), the width-scaled std 0.0283 (std x
# sqrt(fan-in) as at full width) with the paper's head, the paper's rate 0.01 and batch 256, and (a
# diagnosis, not a candidate) std 0.0283 without weight decay; issue 24 saw the linear head at std
# 0.01 and 0.0283 stay there for 15 epochs at rates 0.02 and 0.05. A's nine layers at std 0.01 scale
# the signal (std x sqrt(fan-in / 2) each) by about 1e-9 at width 1/8 and 4e-6 at full width; the
# width-scaled std restores the full-width 4e-6 and still stalls: what is missing is steps (the
# paper's A had about 370,000, 18 epochs here are 2,800). No budget this profile can afford lets A
# leave the plateau, so the init ablation keeps the recipe and its from-A claims, whose A stalled,
# cannot be judged (the report says so).
# 90 minutes (issue 24), 2026-12-06, quiet machine: the 18-epoch recipe's whole run, estimated from its
# measured cells, is about 110 minutes one cell at a time on both cores (the six ablations that ran, 63
# minutes; scale + evaluation, measured on D seed 0, 287 s a net and seed: 176 s training, 111 s
# evaluating, of which the 5 x 5 multi-crop about 60 s). Two levers, measured:
#  - one 1-thread cell per core (workers="auto", cpu_threads=1) instead of one 2-thread cell: D alone
#    trains 3,120 img/s on 1 thread, two 1-thread D side by side 3,121 + 3,107, one D on 2 threads
#    4,441-5,217 (`vggbench bench throughput`); whole cells: A, D, E, E-BN x 2 seeds took 354 s for 12
#    epochs serially on 2 threads and 283 s for 15 epochs as 2 workers, 1.56x the epochs per second;
#  - fewer epochs, by how the nets train (same cells, seeds 0 and 1; val top-1 gain over the last 3):
#      12 epochs: A 0.47 0.25, D 0.74 0.77, E 1.07 0.76, E-BN 0.14 0.29 (median 0.60: D and E still rising;
#                 test A 51.3/49.6, D 47.3/47.4)
#      15 epochs: A 0.27 0.23, D 0.04 0.34, E 0.09 0.03, E-BN 0.38 0.10 (median 0.17: flat; test A 52.3/53.0,
#                 D 49.3/50.2, E 45.8/47.4, E-BN 52.8/52.4)
#      18 epochs (the run above, 58 cells): median 0.15, largest 0.49; test A 53-54, D about 50.
#    15 epochs learn nearly what 18 do, and flat; 12 leave the deep plain nets rising.
# So 15 epochs, two 1-thread workers: about 60-65 minutes estimated; measured 68 min 34 s for the whole run
# (cafb00d, fresh clone, idle machine; both settings adequate, median end gain about 0.1: docs/cpu-run.md).
# Test on 5,000 images (a standard error of about 0.7 points at 50 %), val the 5,000 held out.
CPU_RECIPE = dict(width=0.125, train_subset=10_000, test_subset=5_000, epochs=15, batch_size=64, grad_clip=1.0)

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
        TrainSpec(epochs=CPU_RECIPE["epochs"], batch_size=CPU_RECIPE["batch_size"], grad_clip=CPU_RECIPE["grad_clip"]),
        bench_batch=64, bench_warmup=1, bench_repeats=3, bench_window_s=0.25, tune_by_default=True, cpu_threads=1, workers="auto",
        description="real CIFAR-10 (10,000 train, 5,000 test), width 1/8, 15 epochs, gradients clipped at norm 1, "
                    "a 1-thread cell per core: every ablation, 3 seeds, about an hour on 2 CPU cores"),
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
