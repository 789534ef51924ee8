"""`vggbench report`: the sections in order, rendered to <out>/report.md and report.html, and the
verdict summary to <out>/verdicts.md (summary.py)."""
from __future__ import annotations

from pathlib import Path

from .. import records, tables
from ..grid import ABLATIONS
from . import budget as budgets
from . import figures
from .blocks import Block
from .claims import judge_claims, section_claims
from .overview import section_environment, section_files, section_summary
from .per_class import section_per_class
from .references import load_references
from .render import render_html, render_md
from .sections import section_ablation, section_setting, section_unrun
from .settings import group_settings, load_records
from .summary import FILE as SUMMARY_FILE, summary_blocks


def build_blocks(results_dir: Path, out: Path, data_dir: str | None = None,
                 cache_dir: str | None = None) -> tuple[list[Block], list[Block]]:
    """(the report's blocks, the verdict summary's blocks): one judgement of every claim for both."""
    all_records = load_records(results_dir)
    settings = group_settings(all_records)
    claims = load_references()["claims"]
    figdir = out / "figures"
    budget = {s.index: budgets.judge(s) for s in settings}
    judged = {s.index: judge_claims(s, claims, budget[s.index]) for s in settings}
    blocks = section_summary(settings, judged, budget, results_dir, out, len(all_records))
    for s in settings:
        b = budget[s.index]
        blocks += section_setting(s, b) + section_claims(s, judged[s.index], b, figdir)
        ran = set(s.rows.ablation)
        for name in ABLATIONS:
            if name in ran:
                blocks += section_ablation(s, name, b, figdir)
        blocks += section_unrun(s, [name for name in ABLATIONS if name not in ran])
        data, why = figures.load_setting_data(s, data_dir, cache_dir)
        blocks += (figures.section_samples(s, data, why, figdir)
                   + figures.section_feature_maps(s, data, why, results_dir, out, figdir)
                   + section_per_class(s, data, results_dir, figdir))
    blocks += section_environment(all_records) + section_files(results_dir, out)
    return blocks, summary_blocks(settings, judged, budget, results_dir, out, len(all_records))


def build_report(results_dir: str | Path = "results", out: str | Path | None = None,
                 data_dir: str | None = None, cache_dir: str | None = None) -> dict:
    """Write <out>/report.md, <out>/report.html, <out>/verdicts.md and <out>/figures/*.png; returns
    their paths. `cache_dir` is where a dataset the figures need is decoded (default: the datasets' own)."""
    results_dir = Path(results_dir)
    # A read-only results folder (a colleague's, an archive) is read, never written: the report goes elsewhere.
    advice = "pass --out a writable folder" if out is None else "choose another --out or make it writable"
    out = tables.check_writable(out if out is not None else records.Results(results_dir).report, "report folder", advice)
    figdir = out / "figures"
    if figdir.is_dir():
        for old in figdir.glob("*.png"):  # figures of an earlier build: ours to replace
            old.unlink()
    blocks, summary = build_blocks(results_dir, out, data_dir, cache_dir)
    md, page, verdicts = out / "report.md", out / "report.html", out / SUMMARY_FILE
    markdown = render_md(blocks, out)
    records.atomic_write(md, markdown)
    records.atomic_write(page, render_html(markdown, out))
    records.atomic_write(verdicts, render_md(summary, out))
    for path in (md, page, verdicts):  # atomic_write creates 0600 files: a report is for reading
        path.chmod(0o644)
    return {"md": md, "html": page, "verdicts": verdicts, "figures": [b.path for b in blocks if b.kind == "img"],
            "tables": sum(b.kind == "table" for b in blocks)}
