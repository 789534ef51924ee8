"""The report's seaborn plots: accuracy vs cost, learning curves, throughput, claims' effects."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..grid import ABLATIONS
from ..statuses import USABLE, Status
from ..trainer import DIVERGE_FACTOR
from .settings import Setting
from .throughput import flag
from .verdicts import CANNOT_JUDGE, GREY, NOT_EVIDENCE, NOT_RUN, VERDICT_COLOURS
from .text import macs_unit, number, status_counts


DPI = 90
METRIC_WORDS = {"params_m": "params (M)"}


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
    factor, unit = macs_unit(df.gmacs)
    df["macs"] = pd.to_numeric(df.gmacs, errors="coerce") * factor
    order = [c for c in _case_order(name) if c in set(df.case)]
    with style():
        fig, axes = new_figure(1, 2)
        for ax, x, label in ((axes[0, 0], "macs", f"{unit} per image"), (axes[0, 1], "params_m", "parameters (M)")):
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
    """Mean over seeds with a min–max band: train loss, val loss, val top-1 and the learning rate."""
    c = s.curves[s.curves.ablation == name].copy() if len(s.curves) else pd.DataFrame()
    if c.empty:
        return None
    chance_loss, chance_acc = math.log(s.num_classes), 100.0 / s.num_classes
    status = s.rows[s.rows.ablation == name].groupby("case").status.agg(
        lambda x: "" if set(x) == {Status.OK} else " (" + status_counts(x) + ")")
    c["variant"] = c.case + c.case.map(status).fillna("")
    for col in ("train_loss", "val_loss", "val_top1", "lr"):
        c[col] = pd.to_numeric(c.get(col), errors="coerce")
    for col in ("train_loss", "val_loss"):   # diverged: off the chart
        c.loc[~c[col].between(0, DIVERGE_FACTOR * chance_loss), col] = math.nan
    order = [o + status.get(o, "") for o in _case_order(name) if o in set(c.case)]
    panels = [("train_loss", chance_loss, "train loss"), ("val_loss", chance_loss, "val loss"),
              ("val_top1", chance_acc, "val top-1 (%)"), ("lr", None, "learning rate")]
    with style():
        fig, axes = new_figure(1, 4, size=(3.4, 3.0))
        for ax, (y, chance, label) in zip(axes[0], panels):
            if c[y].notna().any():
                sns.lineplot(data=c, x="epoch", y=y, hue="variant", hue_order=order, errorbar=("pi", 100),
                             marker="o", ax=ax, legend=(y == "lr"), lw=1.2, markersize=3)
            if chance is not None:
                ax.axhline(chance, ls="--", color="grey", lw=1)
            ax.set_ylabel(label)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if axes[0, 3].get_legend():
            sns.move_legend(axes[0, 3], "upper left", bbox_to_anchor=(1, 1), fontsize=8, title=None)
        fig.suptitle(f"{name}: mean over seeds, band min–max (dashed: chance)", fontsize=10)
        return save_figure(fig, path)


def tuning_rows(s: Setting, name: str) -> pd.DataFrame:
    """The learning-rate grids behind an ablation's tuned cases (vggbench/tuning.py), one row per
    (case, rate): validation top-1, status, whether it was the rate chosen, its wall time."""
    cells = set(s.rows[s.rows.ablation == name].cell_id)
    rows, seen = [], set()
    for r in s.records:
        t = r.get("tuning")
        if not t or r["cell_id"] not in cells:
            continue
        case = s.rows[(s.rows.ablation == name) & (s.rows.cell_id == r["cell_id"])].case.iloc[0]
        for c in t["cells"]:
            if (case, c["cell_id"]) not in seen:  # the seeds of a case share its tuning cells
                seen.add((case, c["cell_id"]))
                rows.append({"case": case, "lr": c["lr"], "val_top1": c.get(t["by"]), "status": c["status"],
                             "chosen": c["lr"] == t["chosen_lr"], "wall_s": c.get("wall_s")})
    return pd.DataFrame(rows, columns=["case", "lr", "val_top1", "status", "chosen", "wall_s"])


def plot_lr_sensitivity(s: Setting, name: str, path: Path) -> Path | None:
    """Validation top-1 against the learning rate (log axis), one line per case, the chosen rate
    starred, runs that diverged or stalled drawn as crosses at chance: the figure of Wilson et al.
    and DeepOBS, read from the tuned records."""
    t = tuning_rows(s, name)
    if t.empty:
        return None
    chance = 100.0 / s.num_classes
    t["y"] = pd.to_numeric(t.val_top1, errors="coerce").where(t.status.isin(USABLE), chance)
    with style():
        fig, axes = new_figure(size=(5.5, 3.6))
        ax = axes[0, 0]
        sns.lineplot(data=t.sort_values("lr"), x="lr", y="y", hue="case", marker="o", ax=ax, lw=1.2)
        failed = t[~t.status.isin(USABLE)]
        if len(failed):
            ax.scatter(failed.lr, failed.y, marker="x", color="black", s=50, zorder=3, label="diverged / stalled")
        chosen = t[t.chosen]
        ax.scatter(chosen.lr, chosen.y, marker="*", color="gold", edgecolor="black", s=160, zorder=4, label="chosen")
        ax.set_xscale("log")
        ax.axhline(chance, ls="--", color="grey", lw=1)
        ax.set_xlabel("learning rate (log)")
        ax.set_ylabel("best val top-1 (%)")
        ax.legend(fontsize=8, loc="best")
        fig.suptitle(f"{name}: learning-rate sensitivity (tuning runs, seed 0; dashed: chance)", fontsize=10)
        return save_figure(fig, path)


def throughput_figure(summary: pd.DataFrame, title: str) -> Figure:
    """Median images/s per case with min–max whiskers (throughput.summarise); never below 0; a case
    whose timings spread too far (throughput.flag) is labelled noisy."""
    with style():
        fig, ax = new_figure(size=(max(4.5, 0.8 * len(summary) + 2), 3.2))
        ax = ax[0, 0]
        for k, (kind, colour) in enumerate((("train", "#1f77b4"), ("infer", "#ff7f0e"))):
            x = [i + (k - 0.5) * 0.25 for i in range(len(summary))]
            med, lo, hi = summary[f"{kind}_median"], summary[f"{kind}_min"], summary[f"{kind}_max"]
            ax.errorbar(x, med, yerr=[(med - lo).clip(lower=0), (hi - med).clip(lower=0)], fmt="o", color=colour,
                        capsize=3, label="inference" if kind == "infer" else kind)
        labels = [r.case + ("\n(noisy)" if flag(r._asdict()).startswith("noisy") else "") for r in summary.itertuples()]
        ax.set_xticks(range(len(summary)), labels, rotation=30, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("images / s")
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
    return fig


def claims_figure(judged: pd.DataFrame, title: str, adequate: bool) -> Figure:
    """Every claim one row: its effect on test top-1 with the 95% CI, coloured by verdict (grey when
    the budget is not adequate); other metrics and claims not run are written on their row.
    Intervals beyond the axis end in an arrow; a reference effect is drawn only on its own scale."""
    df = judged.reset_index(drop=True)
    acc = df[(df.metric == "test_top1") & (df.verdict != CANNOT_JUDGE) & df.effect.apply(lambda v: math.isfinite(number(v)))]
    points = pd.concat([acc.effect, acc.reference_effect.dropna()]).astype(float)
    lo, hi = (points.min(), points.max()) if len(points) else (-1.0, 1.0)
    pad = max(2.0, 0.6 * (hi - lo))
    lo, hi = max(min(lo, 0) - pad, -100.0), min(max(hi, 0) + pad, 100.0)
    with style():
        fig, ax = new_figure(size=(8.0, 0.36 * len(df) + 1.4))
        ax = ax[0, 0]
        for i, r in df.iterrows():
            colour = VERDICT_COLOURS.get(r.verdict, GREY) if adequate else GREY
            if r.verdict in (NOT_RUN, CANNOT_JUDGE):  # no judgement: its words, no effect drawn
                ax.annotate(r.shown if r.verdict == CANNOT_JUDGE else NOT_RUN, (lo, i), xytext=(4, -3),
                            textcoords="offset points", fontsize=7, color=VERDICT_COLOURS[r.verdict])
                continue
            if r.metric != "test_top1" or not math.isfinite(number(r.effect)):
                text = (f"{METRIC_WORDS.get(r.metric, r.metric)}: {r.effect:+.3g} (see table)"
                        if math.isfinite(number(r.effect)) else "no effect (see table)")
                ax.annotate(text, (lo, i), xytext=(4, -3), textcoords="offset points", fontsize=7, color=colour)
                continue
            if math.isfinite(r.low):
                a, b = max(r.low, lo), min(r.high, hi)
                ax.plot([a, b], [i, i], color=colour, lw=2.5)
                if r.low < lo:
                    ax.plot([lo], [i], "<", color=colour, ms=7)
                if r.high > hi:
                    ax.plot([hi], [i], ">", color=colour, ms=7)
            ax.plot([r.effect], [i], "o", color=colour)
            if r.reference_effect is not None and math.isfinite(number(r.reference_effect)):
                ax.plot([r.reference_effect], [i], "x", color="black")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(len(df) - 0.5, -0.5)
        ax.set_yticks(range(len(df)), [f"{r.id}: {r.comparison}" for r in df.itertuples()], fontsize=8)
        refs = "x = reference effect (same dataset)" if df.reference_effect.notna().any() else \
            "reference effects are on another dataset: not drawn"
        ax.set_xlabel(f"effect on test top-1 (points), 95% CI; ◀ ▶ interval clipped; {refs}", fontsize=8)
        legend = ({v: c for v, c in VERDICT_COLOURS.items() if v not in (NOT_RUN, CANNOT_JUDGE)} if adequate
                  else {f"{NOT_EVIDENCE}: the budget is not adequate": GREY})
        if (df.verdict == CANNOT_JUDGE).any():
            legend[f"{CANNOT_JUDGE}: a start net did not train"] = VERDICT_COLOURS[CANNOT_JUDGE]
        for v, colour in legend.items():
            ax.plot([], [], "o-", color=colour, label=v)
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=7)
        ax.set_title(title, fontsize=10)
    return fig
