"""The results report: `vggbench report` turns whatever run records exist under <results>/runs/
into report.md and a self-contained report.html (figures embedded as data URIs), with

- per ablation: a table of every variant (mean +- std over seeds, seeds, params, GMACs, throughput,
  status counts) and seaborn plots (accuracy vs GMACs / params, learning curves, throughput);
- the claims of the paper and later work, each judged from our seeds (vggbench.stats);
- the reference figures (vggbench/references.json) beside our numbers;
- sample training images, feature maps of a trained model, the environment of the runs.

One module per job:
  settings.py    records grouped into settings and placed in their ablation cases
  claims.py      claims judged over seeds (paired t, vggbench.stats)
  sections.py    title, environment, setting and per-ablation sections
  references.py  references.json beside our numbers
  plots.py       seaborn plots
  figures.py     sample images and feature maps (need the data and weights)
  text.py        numbers as text
  blocks.py      the report as a list of blocks
  render.py      blocks -> Markdown and HTML
  build.py       build_report: the sections in order
"""
from .build import build_report

__all__ = ["build_report"]
