"""vggbench: the VGG paper's comparisons (Simonyan & Zisserman 2014) as a pytest ablation suite.

Where things are (one module, one job; docs/development.md, "Layout", has the whole tree):
  models.py      Table 1 as data and one builder (ModelSpec -> nn.Module)
  data/          datasets: spec, registry, sources, the embedded synthetic set
  loader.py      device-resident batches and batched augmentation
  trainer.py     optimisers, schedules, the training loop, run status
  checkpoint.py  per-epoch training state, so a killed run resumes
  measure.py     params, FLOPs (fvcore + FlopCounterMode), throughput, matmul ceiling
  records.py     one JSON record per cell, atomic writes, table rows
  grid.py        the ablations' cases as data
  profiles.py    baseline settings per scale (smoke, cifar10, tiny-imagenet, imagenet)
  options.py     the user's options over a profile
  cells.py       cells = cases x seeds under a profile and options
  run.py         running one cell: lock, reuse, OOM retry, error record, weights
  faults.py      fault injection for the tests ($VGGBENCH_INJECT)
  tables.py      records -> results/<ablation>.csv; the saved session
  launch.py      scale-out: xdist workers, submitit jobs
  bench.py       side-by-side benchmarks (input pipeline, model throughput)
  stats.py       paired t intervals for claims
  report/        report.md + report.html (settings, claims, plots, figures, render)
  cli.py         the `vggbench` command
"""
from .models import CONFIGS, ModelSpec, build_model

__all__ = ["CONFIGS", "ModelSpec", "build_model"]
__version__ = "0.1.0"
