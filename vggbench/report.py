"""The results report: `vggbench report` turns whatever run records exist under <results>/runs/
into report.md and a self-contained report.html (figures embedded as data URIs), with

- per ablation: a table of every variant (mean +- std over seeds, seeds, params, GMACs, throughput,
  status counts) and seaborn plots (accuracy vs GMACs / params, learning curves, throughput);
- the claims of the paper and later work, each judged from our seeds (vggbench.stats);
- the reference figures (vggbench/references.json) beside our numbers;
- sample training images, feature maps of a trained model, the environment of the runs.

Records are grouped into *settings*: runs that differ only along the ablation axes (config,
batch norm, kernels, init, optimizer) belong together; a results folder holding e.g. a smoke run
and a 3-epoch run gets one part per setting. A record is placed in an ablation case by its
configuration, not by the ablation that happened to run it first (one cell, e.g. D with Kaiming
init, SGD and no BN, is a case of four ablations).

The report is a list of blocks (headings, paragraphs, tables, images) built by one function per
section and rendered twice, to markdown and to HTML.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import records, stats
from .data import DataSpec
from .grid import ABLATIONS
from .models import ModelSpec
from .profiles import PROFILES
from .trainer import DEFAULT_LR, DIVERGE_FACTOR, TrainSpec

AXES_MODEL = sorted({k for a in ABLATIONS.values() for c in a.cases for k in c.model})
AXES_TRAIN = sorted({k for a in ABLATIONS.values() for c in a.cases for k in c.train})
COST_PLOTS = ("depth", "kernel")   # ablations whose variants differ in cost: accuracy vs GMACs / params
DPI = 90
VERDICT_COLOURS = {"reproduced": "#1a7f37", "contradicted": "#c0392b", "inconclusive": "#7f8c8d"}
METRICS = {"test_top1": "test top-1 accuracy (points)", "params_m": "parameters (millions)"}


def load_references() -> dict:
    return json.loads((Path(__file__).with_name("references.json")).read_text())


# ------------------------------------------------------------------------------ blocks

@dataclass
class Block:
    kind: str                        # "h1".."h4", "p", "table", "img"
    text: str = ""                   # heading / paragraph (markdown inline: `code`, **bold**, [a](url))
    df: pd.DataFrame | None = None   # table
    path: Path | None = None         # image file


def H(level: int, text: str) -> Block:
    return Block(f"h{level}", text)


def P(text: str) -> Block:
    return Block("p", text)


def T(df: pd.DataFrame, caption: str = "") -> Block:
    return Block("table", caption, df=df)


def I(path: Path, caption: str) -> Block:
    return Block("img", caption, path=path)


# ------------------------------------------------------------------------------ settings

@dataclass
class Setting:
    """Runs that differ only along the ablation axes: one profile, dataset, schedule, device."""
    index: int
    records: list[dict]
    rows: pd.DataFrame       # one row per (ablation, case, seed): records.flatten + num_classes, params_m
    curves: pd.DataFrame     # one row per (ablation, case, seed, epoch)
    profile: str | None
    overrides: list[str] = field(default_factory=list)
    superseded: int = 0      # older records of the same configuration (written before a spec gained a field)

    @property
    def first(self) -> dict:
        return self.records[0]

    @property
    def seeds(self) -> list[int]:
        return sorted({r["config"]["seed"] for r in self.records})

    @property
    def num_classes(self) -> int:
        return self.first["config"]["model"]["num_classes"]

    @property
    def caption(self) -> str:
        """Where a table's numbers come from, in one line."""
        cfg = self.first["config"]
        seeds = self.seeds
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]} ({len(seeds)})"
        prof = f"profile {self.profile}" if self.profile else "profile unknown"
        if self.overrides:
            prof += f" ({', '.join(self.overrides)})"
        return (f"{prof}, dataset {cfg['data']['dataset']}, {_epochs(cfg['train']['epochs'])}, {seed_text}, "
                f"width {cfg['model']['width']:g}, {cfg['device']}")


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def load_records(results_dir: str | Path) -> list[dict]:
    """Every valid record under <results_dir>/runs/ (see records.read_record)."""
    runs = records.runs_dir(results_dir)
    if not runs.is_dir():
        raise FileNotFoundError(f"no run records: {runs} does not exist; run `pytest ablations` first")
    found = [r for p in sorted(runs.glob("*.json")) if (r := records.read_record(p)) is not None]
    if not found:
        raise ValueError(f"no valid run records in {runs}; run `pytest ablations` first")
    return found


def profile_of(record: dict) -> tuple[str | None, list[str]]:
    """The profile a record was most likely run under (the one its configuration differs from in
    the fewest fields, e.g. `--profile smoke --dataset cifar10` is smoke with one override) and
    those differences, in words. None if no profile shares its dataset or head."""
    cfg = record["config"]
    data, model, train_ = cfg["data"], cfg["model"], cfg["train"]
    best = None
    for p in PROFILES.values():
        pairs = [("dataset", data["dataset"], p.data.dataset), ("width", model["width"], p.model.width),
                 ("image size", data["image_size"], p.data.image_size), ("head", model["head"], p.model.head),
                 ("epochs", train_["epochs"], p.train.epochs), ("batch size", train_["batch_size"], p.train.batch_size),
                 ("train subset", data.get("train_subset"), p.data.train_subset),
                 ("test subset", data.get("test_subset"), p.data.test_subset),
                 ("schedule", train_.get("schedule"), p.train.schedule),
                 ("augment", train_.get("augment"), p.train.augment)]
        diffs = [f"{k} {v}" for k, v, base in pairs if v != base]
        if best is None or len(diffs) < len(best[1]):
            best = (p.name, diffs)
    if best is None or len(best[1]) > len(pairs) // 2:
        return None, []
    return best


def _baseline(profile: str | None) -> tuple[ModelSpec, TrainSpec]:
    p = PROFILES.get(profile) if profile else None
    return (p.model, p.train) if p else (ModelSpec(), TrainSpec())


def setting_key(record: dict) -> str:
    """Everything of a record's configuration except the ablation axes and the seed."""
    cfg = record["config"]
    profile, _ = profile_of(record)
    _, base_train = _baseline(profile)
    opt = cfg["train"]["optimizer"]
    default_lr = base_train.lr if base_train.lr is not None else DEFAULT_LR.get(opt)
    return records.canonical({
        "data": cfg["data"], "device": cfg["device"],
        "model": {k: v for k, v in cfg["model"].items() if k not in AXES_MODEL},
        "train": {k: v for k, v in cfg["train"].items() if k not in AXES_TRAIN and k != "lr"},
        "lr": None if cfg["train"].get("lr") == default_lr else cfg["train"].get("lr"),
    })


def cases_of(record: dict, profile: str | None) -> list[tuple[str, str]]:
    """The (ablation, case) pairs whose configuration this record is."""
    base_model, base_train = _baseline(profile)
    model, train_ = record["config"]["model"], record["config"]["train"]
    out = []
    for ab in ABLATIONS.values():
        for case in ab.cases:
            want_m = {k: case.model.get(k, getattr(base_model, k)) for k in AXES_MODEL}
            want_t = {k: case.train.get(k, getattr(base_train, k)) for k in AXES_TRAIN}
            want_m.update(ab.model)  # fields the ablation fixes for all its cases (transfer: the weights' architecture)
            if all(model.get(k) == v for k, v in want_m.items()) and all(train_.get(k) == v for k, v in want_t.items()):
                out.append((ab.name, case.id))
    return out


def _curve_rows(record: dict, ablation: str, case: str) -> list[dict]:
    res = record.get("result", {})
    return [{"ablation": ablation, "case": case, "seed": record["config"]["seed"], "status": record.get("status"),
             "epoch": h.get("epoch"), "train_loss": h.get("train_loss"), "train_top1": h.get("train_top1"),
             "val_top1": h.get("val_top1"), "val_loss": h.get("val_loss")} for h in res.get("history", [])]


def normalised(record: dict) -> dict:
    """The record with config fields added to the specs since it was written set to their defaults
    (e.g. TrainSpec.compile), so that records from before and after such a change compare equal."""
    cfg = record["config"]
    return {**record, "config": {**cfg, "model": {**dataclasses.asdict(ModelSpec()), **cfg["model"]},
                                 "train": {**dataclasses.asdict(TrainSpec()), **cfg["train"]},
                                 "data": {**DataSpec().identity(), **cfg["data"]}}}


def newest_per_cell(recs: list[dict]) -> tuple[list[dict], int]:
    """One record per configuration (the newest by `created`) and how many older ones were dropped."""
    keep: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: str(r.get("created") or "")):
        keep[records.canonical(r["config"])] = r
    return list(keep.values()), len(recs) - len(keep)


def collect(all_records: list[dict]) -> list[Setting]:
    """Group records into settings (largest first) and place each in its ablation cases."""
    groups: dict[str, list[dict]] = {}
    for r in map(normalised, all_records):
        groups.setdefault(setting_key(r), []).append(r)
    settings = []
    for i, group in enumerate(sorted(groups.values(), key=len, reverse=True), 1):
        recs, superseded = newest_per_cell(group)
        profile, overrides = profile_of(recs[0])
        rows, curves = [], []
        for r in recs:
            for ablation, case in cases_of(r, profile):
                row = records.flatten(r, ablation, case)
                row.update(num_classes=r["config"]["model"]["num_classes"],
                           params_m=(r.get("params") or math.nan) / 1e6)
                rows.append(row)
                curves += _curve_rows(r, ablation, case)
        settings.append(Setting(i, recs, pd.DataFrame(rows, columns=records.COLUMNS + ["num_classes", "params_m"]),
                                pd.DataFrame(curves), profile, overrides, superseded))
    return settings


# ------------------------------------------------------------------------------ formatting

def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def _pm(values, digits: int = 1) -> str:
    m, sd, n = stats.mean_std(_num(v) for v in values)
    if n == 0:
        return "-"
    return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {sd:.{digits}f}"


def _mean(values, fmt: str = "{:.3g}") -> str:
    m, _, n = stats.mean_std(_num(v) for v in values)
    return fmt.format(m) if n else "-"


def _status_counts(statuses) -> str:
    counts = pd.Series(list(statuses), dtype=object).value_counts()
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _style():
    return sns.axes_style("whitegrid")


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.4)):
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


# ------------------------------------------------------------------------------ sections

def section_title(settings: list[Setting], results_dir: Path, n_records: int) -> list[Block]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks = [H(1, "VGG ablation report"),
              P(f"Built {now} by `vggbench report` from {n_records} run records in `{results_dir}/runs/`, "
                f"grouped into {len(settings)} setting(s)."),
              P("How to read it: every table says which profile, dataset, number of epochs and seeds it comes from. "
                "A claim's effect is *treatment − control* with a 95% confidence interval over seeds; the verdict is "
                "**reproduced** when the interval lies on the claimed side, **contradicted** when it lies on the "
                "other, and **inconclusive** when it spans the boundary or there are too few seeds. With 2 seeds the t "
                "interval uses 1 degree of freedom (×12.7 the standard error): inconclusive is the honest answer "
                "unless an effect is large and consistent.")]
    for s in settings:
        blocks.append(P(f"- Setting {s.index}: {len(s.records)} records: {s.caption}"))
    return blocks


def section_environment(all_records: list[dict]) -> list[Block]:
    rows = []
    for r in all_records:
        v = r.get("versions", {})
        rows.append({"device": r.get("device"), "python": v.get("python"), "torch": v.get("torch"),
                     "torchvision": v.get("torchvision"), "cuda": v.get("cuda"), "cudnn": v.get("cudnn"),
                     "pandas": v.get("pandas"), "commit": r.get("commit") or "unknown", "created": r.get("created"),
                     "wall_s": _num(r.get("wall_s"))})
    df = pd.DataFrame(rows)
    keys = ["device", "python", "torch", "torchvision", "cuda", "cudnn", "pandas", "commit"]
    table = (df.fillna({k: "-" for k in keys}).groupby(keys, sort=False)
             .agg(records=("created", "size"), first=("created", "min"), last=("created", "max"),
                  **{"compute (h)": ("wall_s", lambda w: f"{w.sum() / 3600:.2f}")})
             .reset_index())
    return [H(2, "Environment"),
            P("Where and with what the records were produced (from the records themselves)."),
            T(table, "device, library versions, commit and dates of the runs")]


def section_setting(s: Setting) -> list[Block]:
    r = s.first
    cfg, ds = r["config"], r.get("dataset", {})
    prof = PROFILES.get(s.profile) if s.profile else None
    sizes = ", ".join(f"{k} {ds['sizes'][k]}" for k in ("train", "val", "test") if k in ds.get("sizes", {}))
    lines = [f"- profile: **{s.profile or 'unknown'}**" + (f": {prof.description}" if prof else "")
             + (f"; overridden: {', '.join(s.overrides)}" if s.overrides else ""),
             f"- dataset: **{cfg['data']['dataset']}** ({sizes}; {ds.get('classes', s.num_classes)} classes, "
             f"{cfg['data']['image_size']}px; {ds.get('source', '')})",
             f"- training: {_epochs(cfg['train']['epochs'])}, batch {cfg['train']['batch_size']}, schedule "
             f"{cfg['train']['schedule']}, weight decay {cfg['train']['weight_decay']:g}, "
             f"augment {cfg['train']['augment']}",
             f"- model: width {cfg['model']['width']:g}, head {cfg['model']['head']}, "
             f"{cfg['model']['num_classes']} classes",
             f"- seeds: {', '.join(map(str, s.seeds))}; device: {cfg['device']}; {len(s.records)} records"]
    if s.superseded:
        lines.append(f"- {s.superseded} older records of the same configurations are superseded by newer ones "
                     "(written before a spec gained a field): the newest record of each cell counts")
    blocks = [H(2, f"Setting {s.index}: {s.caption}"), P("\n".join(lines))]
    if s.profile == "smoke":
        blocks.append(P("The smoke profile checks the machinery, not the science: synthetic glyphs, a narrow "
                        "network and a few epochs. A verdict below speaks about this setting only, not the paper's."))
    return blocks


def _claim_values(s: Setting, ablation: str, case: str, metric: str) -> dict[int, float]:
    df = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    out = {}
    for row in df.itertuples(index=False):
        if metric == "test_top1":
            v = _num(row.test_top1)
            if math.isnan(v) and row.status == "diverged":
                v = 100.0 / row.num_classes  # a diverged net predicts nothing: chance accuracy
        else:
            v = _num(getattr(row, metric))
        out[int(row.seed)] = v
    return out


def _case_status(s: Setting, ablation: str, case: str) -> str:
    return _status_counts(s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)].status)


def judge_claims(s: Setting, claims: list[dict]) -> pd.DataFrame:
    """One row per claim: our effect with its interval and the verdict (vggbench.stats)."""
    rows = []
    for c in claims:
        t = _claim_values(s, c["ablation"], c["treatment"], c["metric"])
        k = _claim_values(s, c["ablation"], c["control"], c["metric"])
        iv = stats.effect(t, k, exact=bool(c.get("exact")))
        v, why = stats.verdict(iv, c["expect"], c.get("margin", 0.0))
        if not t or not k:
            why = f"no records of {c['treatment'] if not t else c['control']}"
        rows.append({"id": c["id"], "claim": c["claim"], "reference": c["reference"], "source": c["source"],
                     "comparison": f"{c['treatment']} − {c['control']}", "metric": c["metric"],
                     "expect": c["expect"] + (f" (margin {c['margin']:g})" if "margin" in c else ""),
                     "effect": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n, "method": iv.method,
                     "reference_effect": c.get("reference_effect"), "verdict": v, "why": why,
                     "runs": f"{_case_status(s, c['ablation'], c['treatment'])} / "
                             f"{_case_status(s, c['ablation'], c['control'])}"})
    return pd.DataFrame(rows)


def plot_claims(judged: pd.DataFrame, path: Path) -> Path | None:
    df = judged[judged.metric == "test_top1"].reset_index(drop=True)
    if df.empty:
        return None
    with _style():
        fig, ax = _figure(size=(7.5, 0.38 * len(df) + 1.3))
        ax = ax[0, 0]
        for i, r in df.iterrows():
            colour = VERDICT_COLOURS[r.verdict]
            if math.isfinite(r.low):
                ax.plot([r.low, r.high], [i, i], color=colour, lw=2.5)
            if math.isfinite(r.effect):
                ax.plot([r.effect], [i], "o", color=colour)
            else:
                ax.annotate("no data", (0, i), xytext=(4, -3), textcoords="offset points", fontsize=7, color="grey")
            if r.reference_effect is not None and math.isfinite(_num(r.reference_effect)):
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
        return _save(fig, path)


def section_claims(s: Setting, claims: list[dict], figdir: Path) -> list[Block]:
    judged = judge_claims(s, claims)
    refs = load_references()["sources"]

    def ci(r) -> str:
        if not math.isfinite(r.effect):
            return "n/a"
        if r.metric == "params_m" and math.isfinite(r.low):
            return f"{r.effect:+.3f} (exact)"
        if not math.isfinite(r.low):
            return f"{r.effect:+.2f} (no CI)"
        return f"{r.effect:+.2f} [{r.low:+.2f}, {r.high:+.2f}]"

    table = pd.DataFrame({
        "claim": judged.claim,
        "reference (source)": [f"{r.reference} ({refs[r.source]['short']})" for r in judged.itertuples()],
        "comparison": judged.comparison, "metric": judged.metric.map(METRICS), "expected": judged.expect,
        "measured effect [95% CI]": [ci(r) for r in judged.itertuples()],
        "interval": judged.method, "runs (treatment / control)": judged.runs, "verdict": judged.verdict,
        "why": judged.why})
    counts = judged.verdict.value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in stats.VERDICTS)
    blocks = [H(3, "Claims"),
              P(f"{len(judged)} claims: {summary}. Effects are treatment − control per seed; intervals are paired t "
                "intervals over the seeds both variants share (Welch's t when they share none), 95%. Diverged "
                "runs count at chance accuracy. *not_greater* claims (\"no better than\") use a practical margin: "
                "reproduced when the whole interval lies below it. Reference figures and their sources are in "
                "`vggbench/references.json`."),
              T(table, f"the paper's claims judged on {s.caption}")]
    p = plot_claims(judged, figdir / f"s{s.index}-claims.png")
    if p:
        blocks.append(I(p, f"effects with 95% CIs, coloured by verdict ({s.caption})"))
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
            "variant": case.id, "seeds": len(g), "test top-1 %": _pm(g.test_top1), "test top-5 %": _pm(g.test_top5),
            "best val top-1 %": _pm(g.best_val_top1), "params (M)": _mean(g.params / 1e6, "{:.3f}"),
            "GMACs": _mean(g.gmacs, "{:.4f}"), "train img/s": _mean(g.train_images_per_s, "{:.0f}"),
            "infer img/s": _mean(g.infer_images_per_s, "{:.0f}"), "epochs run": _mean(g.epochs_run, "{:.1f}"),
            "status": _status_counts(g.status)})
    return pd.DataFrame(out)


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
    with _style():
        fig, axes = _figure(1, 2)
        for ax, x, label in ((axes[0, 0], "gmacs", "GMACs per image"), (axes[0, 1], "params_m", "parameters (M)")):
            sns.scatterplot(data=df, x=x, y="test_top1", hue="case", hue_order=order, ax=ax, s=30, alpha=0.6,
                            legend=(ax is axes[0, 1]))
            means = df.groupby("case")[[x, "test_top1"]].agg(["mean", "std"])
            for case in order:
                m = means.loc[case]
                ax.errorbar(m[(x, "mean")], m[("test_top1", "mean")], yerr=_num(m[("test_top1", "std")]) if
                            math.isfinite(_num(m[("test_top1", "std")])) else None, fmt="none", ecolor="black", lw=1)
                ax.annotate(case, (m[(x, "mean")], m[("test_top1", "mean")]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel("test top-1 (%)")
        if axes[0, 1].get_legend():
            sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1, 1), fontsize=8, title=None)
        fig.suptitle(f"{name}: test accuracy vs cost (points: seeds; bars: ± std)", fontsize=10)
        return _save(fig, path)


def plot_curves(s: Setting, name: str, path: Path) -> Path | None:
    c = s.curves[s.curves.ablation == name].copy() if len(s.curves) else pd.DataFrame()
    if c.empty:
        return None
    chance_loss, chance_acc = math.log(s.num_classes), 100.0 / s.num_classes
    status = s.rows[s.rows.ablation == name].groupby("case").status.agg(
        lambda x: "" if set(x) == {"ok"} else " (" + _status_counts(x) + ")")
    c["variant"] = c.case + c.case.map(status).fillna("")
    for col in ("train_loss", "val_top1"):
        c[col] = pd.to_numeric(c[col], errors="coerce")
    c.loc[~c.train_loss.between(0, DIVERGE_FACTOR * chance_loss), "train_loss"] = math.nan  # diverged: off the chart
    order = [o + status.get(o, "") for o in _case_order(name) if o in set(c.case)]
    with _style():
        fig, axes = _figure(1, 2, size=(5.0, 3.6))
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
        return _save(fig, path)


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
    with _style():
        fig, ax = _figure(size=(max(4.5, 0.8 * len(order) + 2), 3.2))
        ax = ax[0, 0]
        sns.barplot(data=long, x="case", y="images_per_s", hue="kind", order=order, errorbar="sd", ax=ax)
        ax.legend(title=None, fontsize=8)
        ax.set_ylabel("images / s")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_title(f"{name}: throughput (mean ± std over seeds, {s.first['config']['device']})", fontsize=10)
        return _save(fig, path)


def section_ablation(s: Setting, name: str, figdir: Path) -> list[Block]:
    ab = ABLATIONS[name]
    blocks = [H(3, f"Ablation: {name}"), P(ab.question),
              T(ablation_table(s, name), f"{name}: mean ± std over seeds; {s.caption}")]
    if not (s.rows.ablation == name).any():
        blocks.append(P("No records of this ablation in this setting."))
        return blocks
    plots = []
    if name in COST_PLOTS:
        plots.append((plot_cost(s, name, figdir / f"s{s.index}-{name}-cost.png"), "test accuracy vs GMACs and params"))
    plots.append((plot_curves(s, name, figdir / f"s{s.index}-{name}-curves.png"),
                  "learning curves: train loss and val top-1 per epoch"))
    plots.append((plot_throughput(s, name, figdir / f"s{s.index}-{name}-throughput.png"), "throughput"))
    blocks += [I(p, f"{name}: {what} ({s.caption})") for p, what in plots if p is not None]
    return blocks


def _ours(s: Setting, ablation: str, case: str, col: str, err: bool = False) -> str:
    g = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    vals = pd.to_numeric(g[col], errors="coerce")
    return _pm(100 - vals if err else vals) if len(g) else "-"


def table3_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    return pd.DataFrame([{"config": r["config"], "layers": r["layers"], "paper top-1 err": r["top1_err"],
                          "paper top-5 err": r["top5_err"],
                          "ours top-1 err": _ours(s, "depth", r["config"], "test_top1", err=True),
                          "ours top-5 err": _ours(s, "depth", r["config"], "test_top5", err=True)}
                         for r in ref["paper_table3"]["rows"]])


def torchvision_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    rows = []
    for r in ref["torchvision"]["rows"]:
        case = f"{r['config']}-{'bn' if r['batch_norm'] else 'plain'}"
        ours = s.rows[(s.rows.config == r["config"]) & (s.rows.batch_norm == r["batch_norm"])
                      & (s.rows.kernels == "3x3")]
        rows.append({"model": r["model"], "acc@1": r["acc1"], "acc@5": r["acc5"],
                     "params (M)": f"{r['params'] / 1e6:.2f}", "GFLOPS": r["gflops"],
                     "ours top-1": _ours(s, "batchnorm", case, "test_top1") if r["config"] in ("A", "D", "E") else "-",
                     "ours params (M)": _mean(ours.params / 1e6, "{:.3f}")})
    return pd.DataFrame(rows)


def cifar10_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    src = ref["sources"]
    theirs = [{"setting": r["setting"], "test acc %": r["test_acc"], "test err %": r["test_err"],
               "± std": r["std"] if r["std"] is not None else "", "source": src[r["source"]]["short"]}
              for r in ref["cifar10"]["rows"]]
    ours = [{"setting": f"ours: {case}", "test acc %": _ours(s, ab, case, "test_top1"),
             "test err %": _ours(s, ab, case, "test_top1", err=True), "± std": "(± is over seeds)", "source": s.caption}
            for ab, case in (("batchnorm", "D-plain"), ("batchnorm", "D-bn"), ("optimizer", "D-sgd"),
                             ("optimizer", "D-adam"), ("optimizer", "D-adagrad"))]
    return pd.DataFrame(theirs + ours)


def section_references(s: Setting) -> list[Block]:
    ref = load_references()
    src = ref["sources"]
    return [H(3, "References beside our numbers"),
            P(f"Our columns: {s.caption}. They are comparable with the references only in direction, not in "
              "level, unless the setting is the reference's (ImageNet at 224px for the paper and torchvision, "
              "CIFAR-10 at full width for the CIFAR figures)."),
            T(table3_beside_ours(s, ref),
              f"{ref['paper_table3']['what']} — {src['vgg']['cite']} ({src['vgg']['url']})"),
            T(torchvision_beside_ours(s, ref),
              f"{ref['torchvision']['what']} — {src['torchvision']['cite']} ({src['torchvision']['url']})"),
            T(cifar10_beside_ours(s, ref),
              f"{ref['cifar10']['what']} — {src['wilson2017']['cite']} ({src['wilson2017']['url']}); "
              f"{src['cifar10_repro']['cite']}")]


def _load_data(s: Setting, data_dir: str | None):
    """The setting's dataset, or the reason it cannot be loaded."""
    from .data import load_data
    ident = s.first["config"]["data"]
    try:
        return load_data(DataSpec(**ident, data_dir=data_dir)), None
    except Exception as err:  # any loader failure: the report says so instead of failing
        return None, f"{type(err).__name__}: {err}"


def _mosaic(tiles: list[list], size: int, pad: int = 2):
    """Rows of H x W x 3 float images in [0, 1] -> one padded mosaic (nearest-neighbour resized)."""
    import torch
    import torch.nn.functional as F

    ncols = max(len(r) for r in tiles)
    out = torch.ones(len(tiles) * (size + pad) + pad, ncols * (size + pad) + pad, 3)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            t = torch.as_tensor(tile, dtype=torch.float32).permute(2, 0, 1)[None]
            t = F.interpolate(t, size=(size, size), mode="nearest")[0].permute(1, 2, 0)
            y, x = pad + i * (size + pad), pad + j * (size + pad)
            out[y:y + size, x:x + size] = t
    return out.numpy()


def _row_labels(ax, labels: list[str], size: int, pad: int = 2) -> None:
    ax.set_yticks([pad + i * (size + pad) + size / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def section_samples(s: Setting, data, why: str | None, figdir: Path, per_class: int = 8,
                    max_classes: int = 10) -> list[Block]:
    blocks = [H(3, "Sample training images")]
    if data is None:
        return blocks + [P(f"The dataset could not be loaded here ({why}); no sample grid drawn. "
                           "`vggbench report --data-dir DIR` points at a local copy.")]
    classes = list(range(min(max_classes, data.num_classes)))
    rows = [[data.train_x[i].permute(1, 2, 0).float().numpy() / 255
             for i in (data.train_y == c).nonzero().flatten()[:per_class].tolist()] for c in classes]
    size = max(32, data.image_size)
    with _style(), sns.axes_style({"axes.grid": False}):
        fig, ax = _figure(size=(0.75 * per_class + 1.2, 0.75 * len(classes) + 0.3))
        ax[0, 0].imshow(_mosaic(rows, size), interpolation="nearest")
        _row_labels(ax[0, 0], [data.classes[c] for c in classes], size)
        path = _save(fig, figdir / f"s{s.index}-samples.png")
    shown = (f"the first {len(classes)} of {data.num_classes} classes" if len(classes) < data.num_classes
             else "every class")
    return blocks + [I(path, f"{data.name}: {per_class} training images per class, {shown}, one class per row "
                             f"({data.source})")]


def _feature_record(s: Setting, results_dir: Path) -> dict | None:
    """The record whose saved weights draw the feature maps: D (VGG-16) of the depth ablation if
    it has weights, else the deepest plain 3x3 model with weights, preferring runs that trained."""
    have = [r for r in s.records if records.weights_path(results_dir, r["cell_id"]).is_file()]
    if not have:
        return None
    depth = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}

    def rank(r):
        m = r["config"]["model"]
        return (r.get("status") == "ok", m["config"] == "D" and m["kernels"] == "3x3" and not m["batch_norm"],
                m["kernels"] == "3x3", depth.get(m["config"], 0), -r["config"]["seed"])
    return max(have, key=rank)


def feature_maps(record: dict, weights: Path, image, mean, std, channels: int = 6):
    """Per conv layer (after its ReLU): name, shape and the `channels` most active maps for one image."""
    import torch
    from torch import nn

    from .models import build_model

    model = build_model(ModelSpec(**record["config"]["model"]))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    taps, names, block, conv = [], [], 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv} {m.kernel_size[0]}x{m.kernel_size[1]}")
        elif isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda _m, _i, out: taps.append(out.detach().clone()))
        elif isinstance(m, nn.MaxPool2d):
            block, conv = block + 1, 0
    x = (image.float()[None] - torch.tensor(mean).view(1, 3, 1, 1) * 255) / (torch.tensor(std).view(1, 3, 1, 1) * 255)
    with torch.no_grad():
        model(x)
    out = []
    for name, t in zip(names, taps):
        t = t[0]
        top = t.mean((1, 2)).argsort(descending=True)[:channels]
        out.append((name, tuple(t.shape), [t[c].numpy() for c in top.tolist()]))
    return out


def section_feature_maps(s: Setting, data, why: str | None, results_dir: Path, figdir: Path) -> list[Block]:
    blocks = [H(3, "Feature maps of a trained model")]
    rec = _feature_record(s, results_dir)
    if rec is None:
        return blocks + [P(f"No saved weights under `{results_dir}/weights/` for this setting's cells (weights are "
                           "kept for models up to 20M parameters), so no feature maps are drawn.")]
    if data is None:
        return blocks + [P(f"Weights exist (cell {rec['cell_id']}) but the dataset could not be loaded ({why}), "
                           "so there is no image to run through the model.")]
    from matplotlib import colormaps

    weights = records.weights_path(results_dir, rec["cell_id"])
    image, label = data.test_x[0], int(data.test_y[0])
    layers = feature_maps(rec, weights, image, data.mean, data.std)
    cmap = colormaps["viridis"]

    def colour(fmap):
        lo, hi = float(fmap.min()), float(fmap.max())
        return cmap((fmap - lo) / (hi - lo) if hi > lo else fmap * 0)[..., :3]

    size = max(32, data.image_size)
    mosaic = _mosaic([[colour(f) for f in maps] for _, _, maps in layers], size)
    with _style(), sns.axes_style({"axes.grid": False}):
        n = len(layers[0][2])
        fig = Figure(figsize=(1.4 + 0.62 * n + 1.8, 0.6 * len(layers) + 0.6), layout="constrained")
        FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 0.62 * n + 1.8]})
        left.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        left.set_title(f"input: {data.classes[label]}", fontsize=8)
        left.axis("off")
        left.set_anchor("N")
        right.imshow(mosaic, interpolation="nearest")
        _row_labels(right, [f"{name}  {shape[0]}ch {shape[1]}x{shape[2]}" for name, shape, _ in layers], size)
        right.set_title(f"{n} most active channels per conv layer (after ReLU)", fontsize=8)
        path = _save(fig, figdir / f"s{s.index}-feature-maps.png")
    m = rec["config"]["model"]
    return blocks + [
        P(f"Model: cell `{rec['cell_id']}` ({ModelSpec(**m).name}, init {m['init']}, "
          f"optimizer {rec['config']['train']['optimizer']}, seed {rec['config']['seed']}, "
          f"status {rec.get('status')}, test top-1 {_num(rec.get('result', {}).get('test', {}).get('top1')):.1f}%), "
          f"weights `{weights}`. Each row is one conv layer after its ReLU: the {len(layers[0][2])} channels with the "
          "highest mean activation for the first test image, each scaled to its own range."),
        I(path, f"feature maps of {ModelSpec(**m).name} for one {data.name} test image ({s.caption})")]


# ------------------------------------------------------------------------------ rendering

def md_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = [cell(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_md(blocks: list[Block], out: Path) -> str:
    parts = []
    for b in blocks:
        if b.kind.startswith("h"):
            parts.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "table":
            parts.append((f"*{b.text}*\n\n" if b.text else "") + md_table(b.df))
        elif b.kind == "img":
            parts.append(f"![{b.text}]({b.path.relative_to(out).as_posix()})\n\n*{b.text}*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", t)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', t)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1.4em}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f2f2f2}caption{caption-side:top;text-align:left;font-size:12.5px;
color:#555;padding:2px 0}
figure{margin:.5em 0 1.5em}img{max-width:100%;height:auto;display:block}figcaption{font-size:12.5px;color:#555}
code{background:#f4f4f4;padding:0 3px}ul{margin:.2em 0}
.reproduced{color:#1a7f37;font-weight:600}.contradicted{color:#c0392b;font-weight:600}.inconclusive{color:#7f8c8d}
"""


def _html_table(b: Block) -> str:
    t = b.df.to_html(index=False, border=0, na_rep="", escape=True)
    for v in stats.VERDICTS:
        t = t.replace(f"<td>{v}</td>", f'<td class="{v}">{v}</td>')
    if b.text:
        t = t.replace(">", f"><caption>{_inline(b.text)}</caption>", 1)
    return t


def _html_paragraph(text: str) -> str:
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline(text)}</p>"


def render_html(blocks: list[Block]) -> str:
    body = []
    for b in blocks:
        if b.kind.startswith("h"):
            body.append(f'<{b.kind} id="{_slug(b.text)}">{_inline(b.text)}</{b.kind}>')
        elif b.kind == "p":
            body.append(_html_paragraph(b.text))
        elif b.kind == "table":
            body.append(_html_table(b))
        elif b.kind == "img":
            data = base64.b64encode(b.path.read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.text)}">'
                        f"<figcaption>{_inline(b.text)}</figcaption></figure>")
    title = next((b.text for b in blocks if b.kind == "h1"), "report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>\n'
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------ build

def build_blocks(results_dir: Path, out: Path, data_dir: str | None = None) -> list[Block]:
    all_records = load_records(results_dir)
    settings = collect(all_records)
    claims = load_references()["claims"]
    figdir = out / "figures"
    blocks = section_title(settings, results_dir, len(all_records)) + section_environment(all_records)
    for s in settings:
        blocks += section_setting(s) + section_claims(s, claims, figdir)
        for name in ABLATIONS:
            blocks += section_ablation(s, name, figdir)
        blocks += section_references(s)
        data, why = _load_data(s, data_dir)
        blocks += section_samples(s, data, why, figdir) + section_feature_maps(s, data, why, results_dir, figdir)
    return blocks


def build_report(results_dir: str | Path = "results", out: str | Path | None = None,
                 data_dir: str | None = None) -> dict:
    """Write <out>/report.md, <out>/report.html and <out>/figures/*.png; returns their paths."""
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / "report"
    figdir = out / "figures"
    if figdir.is_dir():
        for old in figdir.glob("*.png"):  # figures of an earlier build: ours to replace
            old.unlink()
    blocks = build_blocks(results_dir, out, data_dir)
    md, page = out / "report.md", out / "report.html"
    records.atomic_write(md, render_md(blocks, out))
    records.atomic_write(page, render_html(blocks))
    for path in (md, page):  # atomic_write creates 0600 files: a report is for reading
        path.chmod(0o644)
    figures = [b.path for b in blocks if b.kind == "img"]
    return {"md": md, "html": page, "figures": figures,
            "tables": sum(b.kind == "table" for b in blocks)}
