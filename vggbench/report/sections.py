"""A setting's part of the report: what it ran, and one section per ablation in the papers' style
(a compact table with Δ vs the ablation's baseline, a cost and throughput table, curves)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import stats
from ..grid import ABLATIONS
from ..profiles import PROFILES
from .blocks import Block, heading, image_block, paragraph, table_block
from .budget import Budget
from .overview import setting_title
from .plots import plot_cost, plot_curves, plot_lr_sensitivity, save_figure, throughput_figure, tuning_rows
from .references import reference_tables
from .settings import Setting, dataset_text
from .text import epochs_text, macs_unit, mean_std_text, mean_text, number, status_counts
from .throughput import SPREAD_FLAG, ceiling_text, flag, rate_text, summarise


def section_setting(s: Setting, budget: Budget) -> list[Block]:
    r = s.first
    cfg, ds = r["config"], r.get("dataset", {})
    prof = PROFILES.get(s.profile) if s.profile else None
    data = cfg["data"]["dataset"]
    # a profile's description names its own data ("embedded synthetic glyphs"): not said of another's
    described = "" if prof is None else (f": {prof.description}" if prof.data.dataset == data else
                                         f": its settings on {data} instead of {prof.data.dataset}")
    sizes = ", ".join(f"{k} {ds['sizes'][k]}" for k in ("train", "val", "test") if k in ds.get("sizes", {}))
    source = "inferred from the configuration" if s.inferred else "stored with the records"
    lines = [f"- budget: **{budget.label}**",
             f"- profile: **{s.profile or 'unknown'}** ({source})" + described
             + (f"; overridden: {', '.join(s.overrides)}" if s.overrides else ""),
             f"- dataset: **{dataset_text(cfg['data'])}** ({sizes}; {ds.get('classes', s.num_classes)} classes, "
             f"{cfg['data']['image_size']}px; {ds.get('source', '')})",
             f"- training: {epochs_text(cfg['train']['epochs'])}, batch {cfg['train']['batch_size']}, schedule "
             f"{cfg['train']['schedule']}, weight decay {cfg['train']['weight_decay']:g}, "
             f"augment {cfg['train']['augment']}",
             f"- model: width {cfg['model']['width']:g}, head {cfg['model']['head']}, "
             f"{cfg['model']['num_classes']} classes",
             f"- seeds: {', '.join(map(str, s.seeds))}; device: {cfg['device']}; {len(s.records)} records; "
             f"compute {sum(number(x.get('wall_s')) for x in s.records) / 3600:.2f} h",
             "- test top-1 is measured once, after the final epoch; best val top-1 is the best epoch's"]
    if s.superseded:
        lines.append(f"- {s.superseded} older records of the same configurations are superseded by newer ones "
                     "(written before a spec gained a field): the newest record of each cell counts")
    if s.placed_by_case:
        lines.append(f"- {s.placed_by_case} records were written before records named their table rows: each is "
                     "placed in the one case that wrote it (run its cells again to record every row they are)")
    blocks = [heading(2, setting_title(s)), paragraph("\n".join(lines))]
    if s.profile == "smoke":
        what = "synthetic glyphs" if data == "synthetic" else f"{data} at {cfg['data']['image_size']}px"
        blocks.append(paragraph(f"The smoke profile checks the machinery, not the science: {what}, a narrow "
                                "network and a few epochs. A verdict below speaks about this setting only."))
    return blocks


def _delta(s: Setting, name: str, case, base) -> str:
    """Δ test top-1 vs the baseline case, paired over seeds, with its 95% CI."""
    if case.id == base.id:
        return "baseline"
    df = s.rows[s.rows.ablation == name]
    pick = lambda cid: {int(r.seed): number(r.test_top1) for r in df[df.case == cid].itertuples()}  # noqa: E731
    iv = stats.effect(pick(case.id), pick(base.id))
    if not math.isfinite(iv.estimate):
        return "-"
    ci = f" [{iv.low:+.1f}, {iv.high:+.1f}]" if iv.defined else ""
    return f"{iv.estimate:+.1f}{ci} vs {base.id}"


def _whole(values) -> str:
    """Epochs run as whole numbers: one value when all seeds agree, else the range."""
    v = sorted({int(x) for x in map(number, values) if math.isfinite(x)})
    return "-" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def ablation_table(s: Setting, name: str) -> pd.DataFrame:
    """One row per case: accuracy over seeds, Δ vs the baseline with its CI; the best mean in bold."""
    ab = ABLATIONS[name]
    df = s.rows[s.rows.ablation == name]
    means = {c.id: stats.mean_std(map(number, df[df.case == c.id].test_top1))[0] for c in ab.cases}
    finite = {k: v for k, v in means.items() if math.isfinite(v)}
    best = max(finite, key=finite.get) if finite else None
    out = []
    for case in ab.cases:
        g = df[df.case == case.id]
        if g.empty:
            out.append({"variant": case.id, "seeds": 0, "status": "no records"})
            continue
        top1 = mean_std_text(g.test_top1)
        out.append({"variant": case.id, "seeds": len(g),
                    "test top-1 %": f"**{top1}**" if case.id == best else top1,
                    "Δ top-1 [95% CI]": _delta(s, name, case, ab.baseline_of(case)),
                    "best val top-1 %": mean_std_text(g.best_val_top1), "epochs run": _whole(g.epochs_run),
                    "status": status_counts(g.status)})
    return pd.DataFrame(out)


READINGS = [("test_at_val_epoch_top1", "test top-1 %, epoch chosen on val"),
            ("best_test_top1", "test top-1 %, epoch chosen on test"),
            ("last_val_top1", "held-out val top-1 %, last epoch"),
            ("last_train_eval_top1", "'validation' on train top-1 %, last epoch")]


def readings_table(s: Setting, name: str) -> pd.DataFrame:
    """Per case, the readings of its runs' per-epoch histories (records.readings; the pitfalls
    ablation): each protocol's number beside the mistaken one's, and the difference per seed. Empty
    for an ablation whose records have none."""
    df = s.rows[s.rows.ablation == name]
    if not {c for c, _ in READINGS} <= set(df.columns):
        return pd.DataFrame()
    out = []
    for case in ABLATIONS[name].cases:
        g = df[(df.case == case.id) & df.best_test_top1.notna()]
        if g.empty:
            continue
        num = lambda col: pd.to_numeric(g[col], errors="coerce")  # noqa: E731
        out.append({"variant": case.id, **{label: mean_std_text(num(col)) for col, label in READINGS},
                    "bias of choosing on test (points)": mean_std_text(num("best_test_top1") - num("test_at_val_epoch_top1")),
                    "train − val gap (points)": mean_std_text(num("last_train_eval_top1") - num("last_val_top1"))})
    return pd.DataFrame(out)


def cost_table(s: Setting, name: str) -> pd.DataFrame:
    """Per case: size, compute, throughput as median (min–max) with its flag, time per epoch, wall time."""
    df = s.rows[s.rows.ablation == name]
    thr = summarise(s, name).set_index("case")
    factor, unit = macs_unit(df.gmacs)
    out = []
    for case in ABLATIONS[name].cases:
        g = df[df.case == case.id]
        if g.empty:
            continue
        t = thr.loc[case.id]
        macs = pd.to_numeric(g.gmacs, errors="coerce") * factor
        out.append({"variant": case.id, "params (M)": mean_text(g.params / 1e6, "{:.3f}"),
                    unit: mean_text(macs, "{:.1f}" if unit == "MMACs" else "{:.2f}"),
                    "train img/s median (min–max)": rate_text(t, "train"),
                    "infer img/s median (min–max)": rate_text(t, "infer"),
                    "of matmul ceiling": ceiling_text(t.ceiling_fraction, g.get("amp")),
                    "s / epoch": mean_text(g.epoch_s, "{:.2f}"),
                    "wall s": mean_text(g.wall_s, "{:.0f}"), "throughput note": flag(t) or "-"})
    return pd.DataFrame(out)


def _budget_caption(s: Setting, budget: Budget) -> str:
    cfg, ds = s.first["config"], s.first.get("dataset", {})
    train = ds.get("sizes", {}).get("train")
    return (f"{epochs_text(cfg['train']['epochs'])} on {train or '?'} {cfg['data']['dataset']} training images, "
            f"width {cfg['model']['width']:g}, batch {cfg['train']['batch_size']}; budget "
            + ("adequate" if budget.adequate else "not adequate (see the setting)"))


def section_ablation(s: Setting, name: str, budget: Budget, figdir: Path) -> list[Block]:
    ab = ABLATIONS[name]
    df = s.rows[s.rows.ablation == name]
    n = sorted(df.groupby("case").size().unique())
    n_text = str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"
    compute = pd.to_numeric(df.wall_s, errors="coerce").sum() / 3600
    tuning = tuning_rows(s, name)
    tuning_h = pd.to_numeric(tuning.wall_s, errors="coerce").sum() / 3600
    protocol = (f"; tuned: {len(tuning)} tuning runs, {tuning_h:.2f} h of tuning vs {compute:.2f} h of final "
                "cells" if len(tuning) else "; at fixed learning rates (not tuned)"
                if ab.tune_by_default else "")
    blocks = [heading(3, f"Ablation: {name}"), paragraph(ab.question),
              table_block(ablation_table(s, name),
                          f"test top-1 mean ± std over seeds (best in bold), Δ paired over seeds; n = {n_text} seeds "
                          f"per case; {_budget_caption(s, budget)}{protocol}")]
    readings = readings_table(s, name)
    if len(readings):
        blocks.append(table_block(readings, "readings of each run's per-epoch history (mean ± std over seeds): test at "
                                            "the epoch chosen on val (the protocol) vs the best test epoch (chosen on "
                                            "test), and held-out val vs top-1 on as many training images, last epoch"))
    blocks.append(table_block(cost_table(s, name),
                              f"cost: throughput is the median of the seeds' timings with the extreme repeats; flagged "
                              f"when (max − min) / median > {SPREAD_FLAG:g}; compute of this ablation {compute:.2f} h "
                              "(a cell shared with other ablations counts in each)"))
    thr = summarise(s, name)
    plots = []
    if ab.display.cost_plots:
        plots.append((plot_cost(s, name, figdir / f"s{s.index}-{name}-cost.png"), "test accuracy vs MACs and params"))
    plots.append((plot_curves(s, name, figdir / f"s{s.index}-{name}-curves.png"),
                  "train and val loss, val top-1 and learning rate per epoch"))
    plots.append((plot_lr_sensitivity(s, name, figdir / f"s{s.index}-{name}-lr.png"),
                  "validation top-1 against the learning rate of each case's tuning runs (★ chosen)"))
    if not thr.empty and thr.train_median.notna().any():
        fig = throughput_figure(thr, f"{name}: images/s, median and min–max ({s.first['config']['device']})")
        plots.append((save_figure(fig, figdir / f"s{s.index}-{name}-throughput.png"), "throughput"))
    blocks += [image_block(p, f"{name}: {what}") for p, what in plots if p is not None]
    return blocks + reference_tables(s, ab.display.references)


def section_unrun(s: Setting, names: list[str]) -> list[Block]:
    """Ablations without records in a setting: one line, not a section each."""
    return [paragraph(f"Not run in this setting: {', '.join(names)}.")] if names else []
