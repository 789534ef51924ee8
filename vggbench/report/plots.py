"""The report's seaborn plots: accuracy vs cost, learning curves, throughput, claims' effects."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..grid import ABLATIONS
from ..trainer import DIVERGE_FACTOR
from .settings import Setting
from .verdicts import VERDICT_COLOURS
from .text import number, status_counts


DPI = 90


def style():
    return sns.axes_style("whitegrid")


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.4)):
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _case_order(name: str) -> list[str]:
    return [c.id for c in ABLATIONS[name].cases]


def plot_cost(s: Setting, name: str, path: Path) -> Path | None:
    df = s.rows[(s.rows.ablation == name)].copy()
    df["test_top1"] = pd.to_numeric(df.test_top1, errors="coerce")
    df = df.dropna(subset=["test_top1"])
    if df.empty:
        return None
    df["params_m"] = df.params / 1e6
    order = [c for c in _case_order(name) if c in set(df.case)]
    with style():
        fig, axes = new_figure(1, 2)
        for ax, x, label in ((axes[0, 0], "gmacs", "GMACs per image"), (axes[0, 1], "params_m", "parameters (M)")):
            sns.scatterplot(data=df, x=x, y="test_top1", hue="case", hue_order=order, ax=ax, s=30, alpha=0.6,
                            legend=(ax is axes[0, 1]))
            means = df.groupby("case")[[x, "test_top1"]].agg(["mean", "std"])
            for case in order:
                m = means.loc[case]
                ax.errorbar(m[(x, "mean")], m[("test_top1", "mean")], yerr=number(m[("test_top1", "std")]) if
                            math.isfinite(number(m[("test_top1", "std")])) else None, fmt="none", ecolor="black", lw=1)
                ax.annotate(case, (m[(x, "mean")], m[("test_top1", "mean")]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel("test top-1 (%)")
        if axes[0, 1].get_legend():
            sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1, 1), fontsize=8, title=None)
        fig.suptitle(f"{name}: test accuracy vs cost (points: seeds; bars: ± std)", fontsize=10)
        return save_figure(fig, path)


def plot_curves(s: Setting, name: str, path: Path) -> Path | None:
    c = s.curves[s.curves.ablation == name].copy() if len(s.curves) else pd.DataFrame()
    if c.empty:
        return None
    chance_loss, chance_acc = math.log(s.num_classes), 100.0 / s.num_classes
    status = s.rows[s.rows.ablation == name].groupby("case").status.agg(
        lambda x: "" if set(x) == {"ok"} else " (" + status_counts(x) + ")")
    c["variant"] = c.case + c.case.map(status).fillna("")
    for col in ("train_loss", "val_top1"):
        c[col] = pd.to_numeric(c[col], errors="coerce")
    c.loc[~c.train_loss.between(0, DIVERGE_FACTOR * chance_loss), "train_loss"] = math.nan  # diverged: off the chart
    order = [o + status.get(o, "") for o in _case_order(name) if o in set(c.case)]
    with style():
        fig, axes = new_figure(1, 2, size=(5.0, 3.6))
        for ax, y, chance, label in ((axes[0, 0], "train_loss", chance_loss, "train loss"),
                                     (axes[0, 1], "val_top1", chance_acc, "val top-1 (%)")):
            sns.lineplot(data=c, x="epoch", y=y, hue="variant", hue_order=order, units="seed", estimator=None,
                         marker="o", ax=ax, legend=(ax is axes[0, 1]), lw=1.2, markersize=4)
            ax.axhline(chance, ls="--", color="grey", lw=1)
            ax.annotate("chance", (c.epoch.min(), chance), textcoords="offset points", xytext=(2, 3), fontsize=7,
                        color="grey")
            ax.set_ylabel(label)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if axes[0, 1].get_legend():
            sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1, 1), fontsize=8, title=None)
        fig.suptitle(f"{name}: learning curves, one line per seed (dashed: chance)", fontsize=10)
        return save_figure(fig, path)


def plot_throughput(s: Setting, name: str, path: Path) -> Path | None:
    df = s.rows[s.rows.ablation == name]
    long = df.melt(id_vars=["case", "seed"], value_vars=["train_images_per_s", "infer_images_per_s"],
                   var_name="kind", value_name="images_per_s")
    long["images_per_s"] = pd.to_numeric(long.images_per_s, errors="coerce")
    long = long.dropna(subset=["images_per_s"])
    if long.empty:
        return None
    long["kind"] = long.kind.map({"train_images_per_s": "train", "infer_images_per_s": "inference"})
    order = [c for c in _case_order(name) if c in set(long.case)]
    with style():
        fig, ax = new_figure(size=(max(4.5, 0.8 * len(order) + 2), 3.2))
        ax = ax[0, 0]
        sns.barplot(data=long, x="case", y="images_per_s", hue="kind", order=order, errorbar="sd", ax=ax)
        ax.legend(title=None, fontsize=8)
        ax.set_ylabel("images / s")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_title(f"{name}: throughput (mean ± std over seeds, {s.first['config']['device']})", fontsize=10)
        return save_figure(fig, path)


def plot_claims(judged: pd.DataFrame, path: Path) -> Path | None:
    df = judged[judged.metric == "test_top1"].reset_index(drop=True)
    if df.empty:
        return None
    with style():
        fig, ax = new_figure(size=(7.5, 0.38 * len(df) + 1.3))
        ax = ax[0, 0]
        for i, r in df.iterrows():
            colour = VERDICT_COLOURS[r.verdict]
            if math.isfinite(r.low):
                ax.plot([r.low, r.high], [i, i], color=colour, lw=2.5)
            if math.isfinite(r.effect):
                ax.plot([r.effect], [i], "o", color=colour)
            else:
                ax.annotate("no data", (0, i), xytext=(4, -3), textcoords="offset points", fontsize=7, color="grey")
            if r.reference_effect is not None and math.isfinite(number(r.reference_effect)):
                ax.plot([r.reference_effect], [i], "x", color="black")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(df)), [f"{r.id}: {r.comparison}" for r in df.itertuples()])
        ax.invert_yaxis()
        ax.set_xlabel("effect on test top-1 (points), 95% CI; x = reference effect")
        for v, colour in VERDICT_COLOURS.items():
            ax.plot([], [], "o-", color=colour, label=v)
        ax.legend(loc="best", fontsize=8)
        finite = pd.concat([df.low, df.high, df.effect]).astype(float)
        finite = finite[finite.abs() < 1e6].dropna()
        if len(finite):  # accuracy differences lie in [-100, 100]: a 1-dof interval can reach beyond
            lo, hi = max(finite.min(), -100.0), min(finite.max(), 100.0)
            span = max(hi - lo, 1.0)
            ax.set_xlim(lo - 0.05 * span, hi + 0.05 * span)
        return save_figure(fig, path)
