"""The results report: `vggbench report` turns whatever run records exist under <results>/runs/
into report.md, a self-contained report.html (figures embedded as data URIs) and verdicts.md (the
verdict summary).

First screen: each setting's verdicts (reproduced / contradicted / inconclusive / cannot be judged /
not run) under its
budget label (budget.py); then per setting its claims, one compact section per ablation that ran
(Δ vs baseline, cost and throughput, curves, the reference tables the ablation's display names),
sample images, feature maps and per-class accuracy; then the environment and links to the files.

One module per job:
  settings.py    records grouped into settings and placed in their ablation cases
  budget.py      the one definition of an adequate training budget
  verdicts.py    verdict words and colours
  claims.py      claims judged over seeds (paired t, vggbench.stats)
  overview.py    first screen (verdict summary), environment, links to files
  sections.py    a setting's description and one section per ablation
  throughput.py  throughput as median (min–max) with its spread flag
  references.py  references.json beside our numbers
  plots.py       seaborn plots
  figures.py     sample images and feature maps (need the data and weights)
  per_class.py   per-class accuracy of the best and worst case
  text.py        numbers, anchors and paths as the report's text
  blocks.py      the report as a list of blocks
  render.py      blocks -> Markdown (markdown-it-py) -> HTML (templates/report.html.j2)
  summary.py     verdicts.md: the verdict summary with its provenance
  build.py       build_report: the sections in order
"""
from .build import build_report

__all__ = ["build_report"]
