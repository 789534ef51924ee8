"""vggbench: the VGG paper's comparisons (Simonyan & Zisserman 2014) as a pytest ablation suite.

Where things are (one module, one job):
  models.py    Table 1 as data and one builder (ModelSpec -> nn.Module)
  data/       datasets: spec, registry, sources, the embedded synthetic set
  loader.py    device-resident batches and batched augmentation
  trainer.py   optimisers, schedules, the training loop, run status
  measure.py   params, FLOPs (fvcore + FlopCounterMode), throughput, matmul ceiling
  records.py   one JSON record per cell, atomic writes, tables
  grid.py      the ablations' cases as data
  profiles.py  baseline settings per scale (smoke, cifar10, tiny-imagenet, imagenet)
  cells.py     cells = cases x seeds under a profile; running one
  cli.py       the `vggbench` command
"""
from .models import CONFIGS, ModelSpec, build_model

__all__ = ["CONFIGS", "ModelSpec", "build_model"]
__version__ = "0.1.0"
