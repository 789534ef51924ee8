"""The report's sections around the claims: title, environment, a setting's description, and one
section per ablation (table of every variant and its plots)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..grid import ABLATIONS
from ..profiles import PROFILES
from .blocks import Block, heading, image_block, paragraph, table_block
from .references import reference_tables
from .plots import plot_cost, plot_curves, plot_throughput
from .settings import Setting
from .text import epochs_text, mean_text, number, mean_std_text, status_counts




def section_title(settings: list[Setting], results_dir: Path, n_records: int) -> list[Block]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks = [heading(1, "VGG ablation report"),
              paragraph(f"Built {now} by `vggbench report` from {n_records} run records in `{results_dir}/runs/`, "
                f"grouped into {len(settings)} setting(s)."),
              paragraph("How to read it: every table says which profile, dataset, number of epochs and seeds it comes from. "
                "A claim's effect is *treatment − control* with a 95% confidence interval over seeds; the verdict is "
                "**reproduced** when the interval lies on the claimed side, **contradicted** when it lies on the "
                "other, and **inconclusive** when it spans the boundary or there are too few seeds. With 2 seeds the t "
                "interval uses 1 degree of freedom (×12.7 the standard error): inconclusive is the honest answer "
                "unless an effect is large and consistent.")]
    for s in settings:
        blocks.append(paragraph(f"- Setting {s.index}: {len(s.records)} records: {s.caption}"))
    return blocks


def section_environment(all_records: list[dict]) -> list[Block]:
    rows = []
    for r in all_records:
        v = r.get("versions", {})
        rows.append({"device": r.get("device"), "python": v.get("python"), "torch": v.get("torch"),
                     "torchvision": v.get("torchvision"), "cuda": v.get("cuda"), "cudnn": v.get("cudnn"),
                     "pandas": v.get("pandas"), "commit": r.get("commit") or "unknown", "created": r.get("created"),
                     "wall_s": number(r.get("wall_s"))})
    df = pd.DataFrame(rows)
    keys = ["device", "python", "torch", "torchvision", "cuda", "cudnn", "pandas", "commit"]
    table = (df.fillna({k: "-" for k in keys}).groupby(keys, sort=False)
             .agg(records=("created", "size"), first=("created", "min"), last=("created", "max"),
                  **{"compute (h)": ("wall_s", lambda w: f"{w.sum() / 3600:.2f}")})
             .reset_index())
    return [heading(2, "Environment"),
            paragraph("Where and with what the records were produced (from the records themselves)."),
            table_block(table, "device, library versions, commit and dates of the runs")]


def section_setting(s: Setting) -> list[Block]:
    r = s.first
    cfg, ds = r["config"], r.get("dataset", {})
    prof = PROFILES.get(s.profile) if s.profile else None
    sizes = ", ".join(f"{k} {ds['sizes'][k]}" for k in ("train", "val", "test") if k in ds.get("sizes", {}))
    lines = [f"- profile: **{s.profile or 'unknown'}**" + (f": {prof.description}" if prof else "")
             + (f"; overridden: {', '.join(s.overrides)}" if s.overrides else ""),
             f"- dataset: **{cfg['data']['dataset']}** ({sizes}; {ds.get('classes', s.num_classes)} classes, "
             f"{cfg['data']['image_size']}px; {ds.get('source', '')})",
             f"- training: {epochs_text(cfg['train']['epochs'])}, batch {cfg['train']['batch_size']}, schedule "
             f"{cfg['train']['schedule']}, weight decay {cfg['train']['weight_decay']:g}, "
             f"augment {cfg['train']['augment']}",
             f"- model: width {cfg['model']['width']:g}, head {cfg['model']['head']}, "
             f"{cfg['model']['num_classes']} classes",
             f"- seeds: {', '.join(map(str, s.seeds))}; device: {cfg['device']}; {len(s.records)} records"]
    if s.superseded:
        lines.append(f"- {s.superseded} older records of the same configurations are superseded by newer ones "
                     "(written before a spec gained a field): the newest record of each cell counts")
    blocks = [heading(2, f"Setting {s.index}: {s.caption}"), paragraph("\n".join(lines))]
    if s.profile == "smoke":
        blocks.append(paragraph("The smoke profile checks the machinery, not the science: synthetic glyphs, a narrow "
                        "network and a few epochs. A verdict below speaks about this setting only, not the paper's."))
    return blocks


def ablation_table(s: Setting, name: str) -> pd.DataFrame:
    df = s.rows[s.rows.ablation == name]
    out = []
    for case in ABLATIONS[name].cases:
        g = df[df.case == case.id]
        if g.empty:
            out.append({"variant": case.id, "seeds": 0, "status": "no records"})
            continue
        out.append({
            "variant": case.id, "seeds": len(g), "test top-1 %": mean_std_text(g.test_top1), "test top-5 %": mean_std_text(g.test_top5),
            "best val top-1 %": mean_std_text(g.best_val_top1), "params (M)": mean_text(g.params / 1e6, "{:.3f}"),
            "GMACs": mean_text(g.gmacs, "{:.4f}"), "train img/s": mean_text(g.train_images_per_s, "{:.0f}"),
            "infer img/s": mean_text(g.infer_images_per_s, "{:.0f}"), "epochs run": mean_text(g.epochs_run, "{:.1f}"),
            "status": status_counts(g.status)})
    return pd.DataFrame(out)


def section_ablation(s: Setting, name: str, figdir: Path) -> list[Block]:
    ab = ABLATIONS[name]
    blocks = [heading(3, f"Ablation: {name}"), paragraph(ab.question),
              table_block(ablation_table(s, name), f"{name}: mean ± std over seeds; {s.caption}")]
    if not (s.rows.ablation == name).any():
        blocks.append(paragraph("No records of this ablation in this setting."))
        return blocks
    plots = []
    if ab.display.cost_plots:
        plots.append((plot_cost(s, name, figdir / f"s{s.index}-{name}-cost.png"), "test accuracy vs GMACs and params"))
    plots.append((plot_curves(s, name, figdir / f"s{s.index}-{name}-curves.png"),
                  "learning curves: train loss and val top-1 per epoch"))
    plots.append((plot_throughput(s, name, figdir / f"s{s.index}-{name}-throughput.png"), "throughput"))
    blocks += [image_block(p, f"{name}: {what} ({s.caption})") for p, what in plots if p is not None]
    return blocks + reference_tables(s, ab.display.references)
