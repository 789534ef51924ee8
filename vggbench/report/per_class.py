"""Per-class test accuracy of the best and the worst case of a setting (by mean test top-1), from
their saved final weights: where a mean hides that a model never predicts some classes."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import records
from .blocks import Block, heading, image_block, paragraph
from .figures import normalised_images, trained_model
from .plots import new_figure, save_figure, style
from .settings import Setting
from .text import number

MAX_CLASSES = 20   # one bar per class up to this many; beyond, bars no longer read


def confusion(model, images, labels, mean, std, num_classes: int, batch: int = 256):
    """Confusion matrix (rows: true class, columns: predicted) of `model` on uint8 images."""
    import torch
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            preds.append(model(normalised_images(images[i:i + batch], mean, std)).argmax(1))
    pred = torch.cat(preds)
    return torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def _extremes(s: Setting, results_dir: Path) -> list[tuple[str, dict]]:
    """(label, record) of the best and the worst case by mean test top-1 that have saved weights."""
    with_weights = {r["cell_id"]: r for r in s.records if records.weights_path(results_dir, r["cell_id"]).is_file()}
    rows = s.rows[s.rows.cell_id.isin(with_weights)]
    means = rows.assign(top1=pd.to_numeric(rows.test_top1, errors="coerce")).groupby("cell_id").top1.mean().dropna()
    if means.empty:
        return []
    best, worst = means.idxmax(), means.idxmin()
    picks = [("best", best)] + ([("worst", worst)] if worst != best else [])
    return [(label, with_weights[cid]) for label, cid in picks]


def _name(rec: dict, s: Setting) -> str:
    cases = s.rows[s.rows.cell_id == rec["cell_id"]]
    return f"{cases.case.iloc[0]} seed {rec['config']['seed']}"


def section_per_class(s: Setting, data, results_dir: Path, figdir: Path) -> list[Block]:
    if data is None:
        return []   # the samples section already says why the data could not be loaded
    picks = _extremes(s, results_dir)
    blocks = [heading(3, "Per-class accuracy of the best and the worst case")]
    if not picks:
        return blocks + [paragraph("No case with saved weights and a test accuracy: nothing to break down.")]
    if data.num_classes > MAX_CLASSES:
        return blocks + [paragraph(f"{data.num_classes} classes: too many for one bar each (up to {MAX_CLASSES}).")]
    acc = {}
    for label, rec in picks:
        cm = confusion(trained_model(rec, records.weights_path(results_dir, rec["cell_id"])), data.test_x,
                       data.test_y, data.mean, data.std, data.num_classes)
        per_class = (cm.diag().double() / cm.sum(1).clamp(min=1).double() * 100).tolist()
        acc[f"{label}: {_name(rec, s)} ({number(rec['result'].get('test', {}).get('top1')):.1f}%)"] = per_class
    with style():
        fig, ax = new_figure(size=(max(6.0, 0.45 * data.num_classes + 2), 3.2))
        ax = ax[0, 0]
        width = 0.8 / len(acc)
        for k, (label, values) in enumerate(acc.items()):
            ax.bar([c + (k - (len(acc) - 1) / 2) * width for c in range(data.num_classes)], values, width, label=label)
        ax.axhline(100.0 / data.num_classes, ls="--", color="grey", lw=1)
        ax.set_xticks(range(data.num_classes), data.classes, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
        path = save_figure(fig, figdir / f"s{s.index}-per-class.png")
    worst_class = {label: min(range(len(v)), key=v.__getitem__) for label, v in acc.items()}
    lines = [f"- {label}: weakest class **{data.classes[c]}** at {acc[label][c]:.1f}%"
             for label, c in worst_class.items() if not math.isnan(acc[label][c])]
    return blocks + [paragraph("\n".join(lines)),
                     image_block(path, f"per-class test accuracy on the {len(data.test_y)} {data.name} test images "
                                       "(dashed: chance), from the final weights")]
