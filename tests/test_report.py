"""vggbench.report on constructed run records (no training): the effects are built in, so the
claims' verdicts are known in advance."""
from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from vggbench import records
from vggbench.report import build_report, figures
from vggbench.report import budget
from vggbench.report.claims import METRICS, comparison, judge_claims, verdict_counts
from vggbench.report.per_class import confusion
from vggbench.report.plots import claims_figure, throughput_figure
from vggbench.report.references import load_references
from vggbench.report.render import render_md
from vggbench.report.sections import ablation_table, cost_table
from vggbench.report.settings import group_settings, load_records, rows_of
from vggbench.report.summary import own_seconds, summary_blocks, wall_time_h
from vggbench.report.throughput import summarise
from vggbench.cells import cells_for
from vggbench.options import Options
from vggbench.run import run_cell, save_weights, trained_record
from vggbench.cli import main
from vggbench.data import ImageData, synthetic
from vggbench.grid import ABLATIONS
from vggbench.measure import count_params
from vggbench.warmstart import FROM_A
from vggbench.models import analytic_macs, build_model
from helpers import FAST

SEEDS = 3
BASE = {"A": 50.0, "A-LRN": 55.0, "B": 52.0, "C": 54.0, "D": 60.0, "E": 59.8}


def accuracy(cell) -> tuple[float | None, str]:
    """The built-in truth: D beats A by 10, E ~ D, LRN +5 (contradicts "no better"), BN -5
    (reversed), large kernels -4, the paper's init (std 0.01) stalls at chance, Adam +-3 noise, Adagrad -10."""
    m, t, s = cell.model, cell.train, cell.seed
    if m.init == "paper":
        if m.config == "E" and s == 2:
            return None, "diverged"
        return 10.0, "stalled"
    acc = BASE[m.config] - 5.0 * m.batch_norm - 4.0 * (m.kernels == "large") - 1.0 * (m.init == "xavier")
    acc += {"sgd": 0.0, "adam": [3.0, -3.0, 1.0][s], "adagrad": -10.0}[t.optimizer]
    acc += {"scratch": 0.0, "finetune": 25.0, "frozen": 15.0, "linear": 10.0}[t.transfer]
    acc += [0.0, 0.3, -0.2][s] + (int(cell.id[:4], 16) % 7 - 3) * 0.05  # seed luck + per-cell jitter
    return acc, "ok"


@functools.lru_cache(maxsize=None)
def _params(spec) -> int:
    with torch.device("meta"):  # shapes only (the transfer ablation's models are full width)
        return count_params(build_model(spec))["params"]


def make_record(cell, epochs: int | None = None) -> dict:
    acc, status = accuracy(cell)
    epochs = epochs or cell.train.epochs
    chance = math.log(cell.model.num_classes)
    hist = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "lr": cell.train.learning_rate, "train_top1": 10.0}
        if status == "diverged":
            row["train_loss"] = float("inf")
        else:
            frac = e / epochs
            row.update(train_loss=chance if status == "stalled" else chance * (1 - 0.5 * frac),
                       val_loss=chance, val_top1=acc * frac if status == "ok" else 10.0, val_top5=50.0)
        hist.append(row)
        if status == "diverged":
            break
    result = {"status": status, "epochs_run": len(hist), "history": hist, "compiled": None}
    if status != "diverged":
        result.update(best_epoch=len(hist), best_val_top1=hist[-1]["val_top1"],
                      test={"loss": 1.0, "top1": acc, "top5": min(100.0, acc + 20)})
        if cell.evaluate:  # section 3.2's methods: each a point more than the one before (made-up, like acc)
            result["evaluation"] = {m: {"top1": acc + i, "top5": min(100.0, acc + 20 + i)}
                                    for i, m in enumerate(cell.evaluate)}
    macs = analytic_macs(cell.model)["total"] / 1e9
    # Built by the code that builds real records (run.trained_record): only the measurements are made up.
    record = trained_record(cell, CONSTRUCTED_DATA, result, counts={"params": _params(cell.model),
                            "trainable_params": _params(cell.model)},
                            flops={"gmacs": macs, "gflops": 2 * macs, "analytic_gmacs": macs, "fvcore_total_gmacs": macs},
                            throughput=made_up_throughput(1000 / (1 + 100 * macs), 3000 / (1 + 100 * macs)),
                            device="CPU: constructed x2 threads", train_batch_size=cell.train.batch_size,
                            amp="float32", wall_s=1.0, started=started_from(cell))
    record = {**record, "commit": "abc1234", "created": "2026-01-01T00:00:00+00:00", "oom_retries": 0}
    return records.with_membership(record, cell.membership())  # the row it is, as run.run_cell writes it


def started_from(cell) -> dict | None:
    """What run.execute keeps of the net a cell starts from (warmstart.py): its case and how it
    ended, by the built-in truth (the from-A cells' A, random "paper" init, stalls)."""
    if cell.start is None:
        return None
    return {"cell_id": cell.start.id, "case": cell.start.case, "status": accuracy(cell.start)[1],
            "layers": list(FROM_A) if cell.start_layers == "from-A" else ["all"], "lr": cell.train.learning_rate}


def made_up_throughput(train: float, infer: float) -> dict:
    """measure_throughput's fields (test_made_up_records_have_the_fields_of_real_ones checks them)."""
    def one(rate, steps):
        return {"images_per_s": rate, "images_per_s_min": 0.95 * rate, "images_per_s_max": 1.05 * rate,
                "spread": 0.1, "batch_size": 32, "repeats": 3, "steps_per_repeat": steps, "warmup_s": 0.01,
                "load_avg_1min": 0.5, "compiled": None, "peak_mem_mb": None}
    return {"train": one(train, 3), "infer": one(infer, 8), "math_mode": {"float32": "ieee", "cudnn_benchmark": True},
            "ceiling_gflop_per_s": 10.0, "ceiling_dtype": "float32", "ceiling_math_mode": "ieee",
            "ceiling_method": "constructed", "ceiling_isa_peak_gflop_per_s": None, "ceiling_isa_method": None,
            "train_gflop_per_s": 1.0, "ceiling_fraction": 0.1, "ceiling_exceeded": False,
            "ceiling_fraction_unclipped": 0.1}


# What trained_record reads of the data: the embedded set's names and sizes, said to be constructed.
CONSTRUCTED_DATA = SimpleNamespace(name="synthetic", classes=list(synthetic.CLASSES), source="constructed for tests",
                                   origin="constructed for tests", sizes=lambda: {"train": 5000, "val": 1000, "test": 2000})


def test_made_up_records_have_the_fields_of_real_ones(tmp_path):
    """A real (tiny) cell's record and a made-up one for the same cell: the same keys at every level
    (per-epoch rows, versions and option overrides aside: their keys vary with the run)."""
    cell = next(c for c in cells_for("depth", Options(epochs=1, train_subset=100, test_subset=50)) if c.case == "A")
    real = run_cell(cell, tmp_path)

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k not in ("history", "versions", "overrides"):
                out |= keys(v, prefix + k + ".")
        return out

    made = make_record(cell)
    # run_cell's answer says whether it was reused; write_record adds the checksum
    assert (sorted(keys(real) - keys(made) - {"reused", "checksum"}), sorted(keys(made) - keys(real))) == ([], [])
    # the same cell as another ablation's case (batchnorm's A-plain is depth's A here): reused, its row added
    same = next(c for c in cells_for("batchnorm", Options(epochs=1, train_subset=100, test_subset=50)) if c.case == "A-plain")
    again = run_cell(same, tmp_path)
    assert same.id == cell.id and again["reused"]
    assert records.memberships(records.read_record(records.record_path(tmp_path, cell.id))) == [
        {"ablation": "depth", "case": "A", "tuned": False}, {"ablation": "batchnorm", "case": "A-plain", "tuned": False}]
def write_grid(results: Path, seeds: int = SEEDS, names=tuple(ABLATIONS), **options) -> dict[str, dict]:
    written = {}
    for name in names:
        for cell in cells_for(name, Options(seeds=seeds, **options)):  # a cell another ablation ran: its row added
            record = records.with_membership(written.get(cell.id) or make_record(cell), cell.membership())
            written[cell.id] = records.write_record(records.record_path(results, cell.id), record)
    return written


def fake_data() -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    y = lambda n: torch.arange(n) % 10  # noqa: E731
    return ImageData("synthetic", [f"class{i}" for i in range(10)], x(40), y(40), x(10), y(10), x(10), y(10),
                     source="random pixels for tests")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A results dir with the whole grid (3 seeds), weights for one D cell, and its report."""
    results = tmp_path_factory.mktemp("results")
    recs = write_grid(results)
    torch.manual_seed(0)
    for case in ("D", "A"):   # weights of the best (D) and the worst (A) depth case with weights
        cell = next(c for c in cells_for("depth", Options(seeds=1)) if c.case == case)
        save_weights(build_model(cell.model), records.weights_path(results, cell.id))
    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "load_setting_data", lambda s, data_dir, cache_dir=None: (fake_data(), None))
    try:
        out = build_report(results, results / "report")
    finally:
        mp.undo()
    return results, out, recs


def test_report_has_a_table_and_plots_for_every_ablation_and_the_claims(built):
    results, out, _ = built
    md = out["md"].read_text()
    for name in ABLATIONS:
        # transfer's architecture (width 1, the paper's head) and the training scales' data (cached at
        # the largest scale) are settings of their own: the setting is the last heading before the ablation
        assert f"### Ablation: {name}" in md
        s = int(re.findall(r"^## Setting (\d+):", md.split(f"### Ablation: {name}")[0], re.M)[-1])
        assert (s == 1) == (not ABLATIONS[name].model and name not in ("scale", "evaluation")), name
        section = md.split(f"### Ablation: {name}")[1].split("\n### ")[0]
        if s == 1:
            assert "n = 3 seeds per case; 2 epochs on 5000 synthetic training images" in section   # caption: n, budget
            assert "budget not adequate (see the setting)" in section
        assert f"figures/s{s}-{name}-curves.png" in md
        assert f"figures/s{s}-{name}-throughput.png" in md
    for name in ("depth", "kernel"):
        assert f"figures/s1-{name}-cost.png" in md
    assert "### Claims" in md and "figures/s1-claims.png" in md
    assert "## Environment" in md and "abc1234" in md
    for name, ab in ABLATIONS.items():   # each reference table beside the ablation whose display names it
        for table in ab.display.references:
            section = md.split(f"### Ablation: {name}")[1].split("\n### ")[0]
            assert load_references()[table]["what"] in section
    assert "vgg16_bn" in md and "29.6" in md
    assert "figures/s1-samples.png" in md and "figures/s1-feature-maps.png" in md
    assert "figures/s1-per-class.png" in md   # best D (60 +- jitter), worst A (50 +- jitter)
    assert re.search(r"- best: D seed 0 \((59\.[89]|60\.[0-3])%\)", md) and re.search(r"- worst: A seed 0 \((49\.[89]|50\.[0-3])%\)", md)
    assert "profile smoke" in md and "2 epochs" in md and "seeds 0-2 (3)" in md
    for f in out["figures"]:
        assert f.is_file() and f.stat().st_size > 1000


def test_html_is_self_contained(built):
    _, out, _ = built
    page = out["html"].read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert len(srcs) == len(out["figures"]) > 10
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'\ssrc="(?!data:)', page)   # nothing to fetch: links are links, images are inline
    assert "<link" not in page and "<script" not in page


def test_verdicts_match_the_built_in_effects(built):
    results, _, recs = built
    setting = group_settings(list(recs.values()))[0]
    judged = judge_claims(setting, load_references()["claims"]).set_index("id")
    expected = {
        "depth-D-vs-A": "reproduced",     # +10, tight
        "depth-E-vs-D": "reproduced",     # -0.2: no clear gain
        "lrn": "contradicted",            # +5: A-LRN clearly better than A
        "kernel-B": "reproduced", "kernel-D": "reproduced", "kernel-D-params": "reproduced",
        "bn-A": "contradicted", "bn-D": "contradicted", "bn-E": "contradicted",  # -5: reversed
        "init-D-kaiming": "reproduced", "init-E-kaiming": "reproduced", "init-E-xavier": "reproduced",
        "opt-sgd-vs-adam": "inconclusive",  # -3, +3, -1: noise
        "opt-sgd-vs-adagrad": "reproduced",
        "transfer-D-finetune": "not run",  # its cells (width 1, the paper's head) are another setting
        "init-D-from-A": "cannot be judged",  # the A it starts from stalled (random "paper" init)
    }
    assert {k: v for k, v in judged.verdict.to_dict().items() if k in expected} == expected
    assert judged.loc["transfer-D-finetune", "why"] == "no records of D-finetune and D-scratch"
    transfer = next(s for s in group_settings(list(recs.values())) if (s.rows.ablation == "transfer").any())
    judged_transfer = judge_claims(transfer, load_references()["claims"]).set_index("id")
    assert judged_transfer.loc["transfer-D-finetune", "verdict"] == "reproduced"  # +25
    assert judged_transfer.loc["transfer-D-finetune", "effect"] == pytest.approx(25.0, abs=0.5)
    assert judged.loc["depth-D-vs-A", "effect"] == pytest.approx(10.0, abs=0.5)
    assert judged.loc["opt-sgd-vs-adam", "why"] == "CI spans 0"
    assert judged.loc["depth-D-vs-A", "method"] == "paired t over 3 seeds"
    # E-paper seed 2 diverged: it counts at chance (10%), so the E init claims keep 3 pairs
    assert judged.loc["init-E-kaiming", "n"] == 3
    assert judged.loc["init-D-from-A", "shown"] == "cannot be judged: A did not train"
    page = built[1]["html"].read_text()   # coloured as a verdict of its own, in the tables and the counts
    assert '<td class="cannot-be-judged">cannot be judged: A did not train</td>' in page
    assert '<td style="text-align:right" class="cannot-be-judged">1 cannot be judged</td>' in page


def test_a_claim_whose_start_net_did_not_train_cannot_be_judged(tmp_path):
    """D-from-A starts from a trained A (the paper's protocol); where that A stalled, the claim about
    D-from-A has lost its premise: "cannot be judged", with the reason, whatever the budget; counted."""
    recs = write_grid(tmp_path, seeds=2, names=("init",))
    claims = [c for c in load_references()["claims"] if c["id"] in ("init-D-from-A", "init-D-kaiming")]

    def judged():
        setting = group_settings(list(recs.values()))[0]
        return judge_claims(setting, claims, budget.judge(setting)).set_index("id")

    by_id = judged()
    assert by_id.loc["init-D-from-A", "verdict"] == "cannot be judged"
    assert by_id.loc["init-D-from-A", "shown"] == "cannot be judged: A did not train"
    assert by_id.loc["init-D-from-A", "why"] == "D-from-A starts from A, which stalled (seeds 0, 1): the claim's premise failed"
    assert by_id.loc["init-D-kaiming", "shown"] == "reproduced (not evidence)"   # no start net: judged as before
    assert verdict_counts(by_id)["cannot be judged"] == 1
    from_a = [r for r in recs.values() if r["case"] == "D-from-A"]
    from_a[0]["start"]["status"] = "ok"    # one seed's A trained: the other's premise still failed
    assert by_id.loc["init-D-from-A", "why"] != judged().loc["init-D-from-A", "why"] == (
        f"D-from-A starts from A, which stalled (seed {from_a[1]['config']['seed']}): the claim's premise failed")
    from_a[1]["start"]["status"] = "ok"    # A trained in every seed: judged like any claim
    assert judged().loc["init-D-from-A", "shown"] == "reproduced (not evidence)"   # +50 built in
    # an error record (its start cell failed) names the start only in its configuration: that cell's record says how it ended
    a_cell = next(c for c in cells_for("init", Options(seeds=2)) if c.case == "D-from-A").start
    recs[a_cell.id] = make_record(a_cell)   # stalled
    del from_a[0]["start"]
    from_a[0].update(status="error", result={})
    assert judged().loc["init-D-from-A", "shown"] == "cannot be judged: A did not train"


def test_the_verdict_summary_file_has_provenance_counts_budget_and_a_row_per_claim(tmp_path):
    """verdicts.md (summary.py): per setting where its numbers come from, the counts per verdict
    under its budget label, one row per claim; the same judgements as the report's."""
    recs = write_grid(tmp_path, seeds=2, names=("init",))
    for i, r in enumerate(sorted(recs.values(), key=lambda r: r["cell_id"])):  # cells ending 10 min apart, 60 s each
        r.update(created=f"2026-01-01T{10 + i // 6:02d}:{10 * (i % 6):02d}:00+00:00", wall_s=60.0)
    settings = group_settings(list(recs.values()))
    claims = load_references()["claims"]
    judge = {s.index: budget.judge(s) for s in settings}
    judged = {s.index: judge_claims(s, claims, judge[s.index]) for s in settings}
    md = render_md(summary_blocks(settings, judged, judge, tmp_path, tmp_path / "report", len(recs)), tmp_path / "report")
    n = len(recs)
    hours = (60 * ((n - 1) // 6) + 10 * ((n - 1) % 6) + 1) / 60   # the first cell's start (09:59) to the last one's end
    assert md.startswith("# Verdict summary\n")
    assert f"| abc1234 | CPU: constructed x2 threads | {hours:.2f} h | {n / 60:.2f} h | smoke (seeds 2) | 2 | not adequate: " in md
    counts = verdict_counts(judged[1])
    assert counts["cannot be judged"] == 1 and sum(counts.values()) == len(claims)
    assert ("| " + " | ".join(counts) + " |\n|" + "|".join(["---:"] * len(counts)) + "|\n| "
            + " | ".join(map(str, counts.values())) + " |") in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in {c["id"] for c in claims}]
    assert len(rows) == len(claims)
    assert "| init-D-from-A | D-from-A − D-paper | " in md and "| cannot be judged: A did not train | D-from-A starts from A" in md
    assert "| init-D-kaiming | D-kaiming − D-paper | " in md and "| reproduced (not evidence) | CI above 0 |" in md
    # an evaluation cell's record repeats its training's wall_s and created: its own time is the evaluation's
    trained = {"created": "2026-01-01T10:00:00+00:00", "wall_s": 600.0}
    evaluated = {**trained, "trained_by": "0123456789abcdef", "evaluation_s": 300.0}
    assert (own_seconds(trained), own_seconds(evaluated)) == (600.0, 300.0)
    assert wall_time_h([trained, evaluated]) == pytest.approx(0.25)   # 09:50 to 10:05


def test_shared_cells_count_in_every_ablation_they_belong_to(built):
    _, _, recs = built
    setting = group_settings(list(recs.values()))[0]
    d = next(c for c in cells_for("depth", Options(seeds=1)) if c.case == "D")
    placed = set(map(tuple, setting.rows[setting.rows.cell_id == d.id][["ablation", "case"]].values))
    assert placed >= {("depth", "D"), ("batchnorm", "D-plain"), ("kernel", "D-3x3"), ("init", "D-kaiming"),
                      ("optimizer", "D-sgd")}   # (and in any later ablation whose case it also is)


def test_tables_show_seeds_and_status_counts(built):
    _, _, recs = built
    setting = group_settings(list(recs.values()))[0]
    init = ablation_table(setting, "init").set_index("variant")
    assert init.loc["D-paper", "status"] == "stalled 3"
    assert init.loc["E-paper", "status"] == "stalled 2, diverged 1"
    assert init.loc["E-paper", "test top-1 %"] == "10.0 ± 0.0"   # the diverged seed has no test metric
    depth = ablation_table(setting, "depth").set_index("variant")
    assert (depth.seeds == SEEDS).all()
    assert float(depth.loc["A", "test top-1 %"].split(" ± ")[0]) == pytest.approx(50.0, abs=0.2)  # 50 + jitter


def test_too_few_seeds_is_inconclusive(tmp_path):
    recs = write_grid(tmp_path, seeds=1)
    setting = group_settings(list(recs.values()))[0]
    judged = judge_claims(setting, load_references()["claims"])
    # (transfer's cells are another setting: its claim has no records here)
    accuracy_claims = judged[(judged.metric == "test_top1") & ~judged.id.isin(("transfer-D-finetune", "init-D-from-A"))]
    assert set(accuracy_claims.verdict) == {"inconclusive"}
    assert judged.set_index("id").loc["init-D-from-A", "verdict"] == "cannot be judged"   # its A stalled: no verdict
    assert accuracy_claims.why.str.startswith("too few seeds").all()


def test_each_setting_gets_its_own_part(tmp_path, monkeypatch):
    write_grid(tmp_path, seeds=2, names=("optimizer",))
    write_grid(tmp_path, seeds=2, names=("optimizer",), epochs=3)
    monkeypatch.setattr(figures, "load_setting_data", lambda s, data_dir, cache_dir=None: (None, "DataError: not here"))
    out = build_report(tmp_path, tmp_path / "rep")
    md = out["md"].read_text()
    assert "## Setting 1:" in md and "## Setting 2:" in md
    assert "profile smoke (epochs 3, seeds 2)" in md
    assert "could not be loaded here (DataError: not here)" in md
    assert "No saved weights under" in md   # no weights: said, not invented


def test_records_from_before_a_spec_gained_a_field_join_their_setting(tmp_path):
    """A record written before TrainSpec had `compile` is the same cell: the newest one counts."""
    recs = write_grid(tmp_path, seeds=2, names=("optimizer",))
    old = json.loads(json.dumps(next(iter(recs.values()))))
    del old["config"]["train"]["compile"]
    old["created"] = "2025-01-01T00:00:00+00:00"
    old["result"]["test"]["top1"] = -1.0
    settings = group_settings(list(recs.values()) + [old])
    assert len(settings) == 1 and settings[0].superseded == 1
    assert (settings[0].rows.test_top1 >= 0).all()   # the older duplicate is not counted


def test_records_from_before_memberships_are_placed_in_the_case_that_wrote_them(tmp_path, monkeypatch):
    """Records without table rows (schema 1): each in the one case that wrote it, said in the report;
    the training record of an evaluation case is that case's row in no table."""
    recs = write_grid(tmp_path, seeds=1, names=("optimizer", "depth"))
    old = [{k: v for k, v in r.items() if k not in ("schema", "cases")} for r in recs.values()]
    [setting] = group_settings(old)
    assert setting.placed_by_case == len(old) == len(setting.rows)   # D-sgd in optimizer only: its writer
    assert not ((setting.rows.ablation == "depth") & (setting.rows.case == "D")).any()
    training = make_record(cells_for("scale", Options())[0].training_cell())
    training = {k: v for k, v in training.items() if k not in ("schema", "cases")}
    assert rows_of(training) == ([], False)
    assert rows_of(records.with_membership(training, None)) == ([], True)   # needed only, as run.execute_cell writes it
    for r in old:
        records.write_record(records.record_path(tmp_path, r["cell_id"]), r)
    monkeypatch.setattr(figures, "load_setting_data", lambda s, data_dir, cache_dir=None: (None, "skipped"))
    md = build_report(tmp_path, tmp_path / "rep")["md"].read_text()
    assert f"{len(old)} records were written before records named their table rows" in md


def test_missing_or_empty_results_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="run `pytest ablations` first"):
        build_report(tmp_path / "nothing")
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["report", "--results-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "vggbench report: error: no valid run records" in err and "Traceback" not in err


def test_cli_builds_the_report(tmp_path, monkeypatch, capsys):
    write_grid(tmp_path, seeds=2, names=("optimizer",))
    asked = []
    monkeypatch.setattr(figures, "load_setting_data",
                        lambda s, data_dir, cache_dir=None: asked.append(cache_dir) or (None, "skipped in this test"))
    assert main(["report", "--results-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert asked == [str(tmp_path / "cache")]   # the figures decode data where the user says, not the default cache
    printed = capsys.readouterr().out
    assert "report:" in printed and (tmp_path / "out" / "report.html").is_file()
    assert (tmp_path / "out" / "report.md").is_file()
    assert f"verdict summary: {tmp_path / 'out' / 'verdicts.md'}" in printed and (tmp_path / "out" / "verdicts.md").is_file()


def test_references_are_consistent_with_the_grid():
    ref = load_references()
    cases = {(a.name, c.id) for a in ABLATIONS.values() for c in a.cases}
    for c in ref["claims"]:
        assert (c["ablation"], c["treatment"]) in cases and (c["ablation"], c["control"]) in cases, c["id"]
        assert c["source"] in ref["sources"] and c["metric"] in METRICS and c.get("control_metric", "test_top1") in METRICS
        assert c["expect"] in ("greater", "less", "not_greater")
    for table in ("paper_table3", "torchvision"):
        assert ref[table]["source"] in ref["sources"]
    shown = [t for a in ABLATIONS.values() for t in a.display.references]
    assert {"cifar10", "paper_table3", "paper_table3_scale", "paper_table4", "paper_table5", "torchvision"} <= set(shown)
    assert len(shown) == len(set(shown))
    for table in shown:   # every row is set beside one of our cases (and a column of its records), or explicitly none
        assert all(r["ours"] is None or tuple(r["ours"][:2]) in cases for r in ref[table]["rows"]), table
        assert all(r["ours"] is None or r["ours"][2:] in ([], ["test_top1"]) or r["ours"][2] in METRICS
                   for r in ref[table]["rows"]), table
    assert all(s["dataset"] in ("imagenet", "cifar10", "tiny-imagenet", "flowers") for s in ref["sources"].values())
    assert all(r["source"] in ref["sources"] for r in ref["cifar10"]["rows"])
    t3 = {r["config"]: r["top1_err"] for r in ref["paper_table3"]["rows"]}
    assert t3 == {"A": 29.6, "A-LRN": 29.7, "B": 28.7, "C": 28.1, "D": 27.0, "E": 27.3}
    # Table 4 of arXiv:1409.1556 v6 (multi-scale dense test), every row; ours: the same trained nets tested multi-scale
    t4 = {(r["config"], r["train_scale"], r["test_scales"]): (r["top1_err"], r["top5_err"]) for r in ref["paper_table4"]["rows"]}
    fixed, jittered = ("224, 256, 288", "352, 384, 416"), "256, 384, 512"
    assert t4 == {("B", "256", fixed[0]): (28.2, 9.6), ("C", "256", fixed[0]): (27.7, 9.2), ("C", "384", fixed[1]): (27.8, 9.2),
                  ("C", "256-512", jittered): (26.3, 8.2), ("D", "256", fixed[0]): (26.6, 8.6),
                  ("D", "384", fixed[1]): (26.5, 8.6), ("D", "256-512", jittered): (24.8, 7.5),
                  ("E", "256", fixed[0]): (26.9, 8.7), ("E", "384", fixed[1]): (26.7, 8.6), ("E", "256-512", jittered): (24.8, 7.5)}
    assert [r["ours"][1] for r in ref["paper_table4"]["rows"] if r["ours"]] == [
        f"{c}-S{s}" for c in "CDE" for s in ("256", "384", "256-512")]
    assert "arXiv:1409.1556 v6" in ref["sources"]["vgg"]["cite"]
    assert "not reachable" not in json.dumps(ref) and "N(0" not in json.dumps(ref)   # the paper's text is quotable; stds as stds


def test_a_claim_without_runs_is_not_run_and_the_figure_has_a_row_per_claim(tmp_path, monkeypatch):
    recs = write_grid(tmp_path, seeds=2, names=("optimizer",))
    setting = group_settings(list(recs.values()))[0]
    claims = load_references()["claims"]
    judged = judge_claims(setting, claims, budget.judge(setting))
    by_id = judged.set_index("id")
    assert by_id.loc["lrn", "verdict"] == "not run"
    assert by_id.loc["lrn", "why"] == "no records of A-LRN and A"
    # D-sgd is depth's D too, but a row of depth only where depth ran (or reused) it: records.memberships
    assert by_id.loc["depth-D-vs-A", "why"] == "no records of D and A"
    assert by_id.loc["opt-sgd-vs-adagrad", "verdict"] == "reproduced"
    assert by_id.loc["opt-sgd-vs-adagrad", "shown"] == "reproduced (not evidence)"   # 2 epochs: not adequate
    n = len(claims) - 2   # only the two optimizer claims have records
    assert verdict_counts(judged) == {"reproduced": 1, "contradicted": 0, "inconclusive": 1, "cannot be judged": 0,
                                      "not run": n}
    fig = claims_figure(judged, "Setting 1", adequate=False)
    rows = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert rows == [f"{c['id']}: {comparison(c)}" for c in claims]   # every claim, in order
    assert fig.axes[0].get_title() == "Setting 1"
    monkeypatch.setattr(figures, "load_setting_data", lambda s, data_dir, cache_dir=None: (None, "skipped"))
    md = build_report(tmp_path, tmp_path / "rep")["md"].read_text()
    assert ("| 1 reproduced (not evidence) | 0 contradicted (not evidence) | 1 inconclusive (not evidence) | "
            f"0 cannot be judged | {n} not run |") in md


def test_the_profile_comes_from_stored_provenance_and_inference_is_said(tmp_path, monkeypatch):
    recs = write_grid(tmp_path, seeds=1, names=("optimizer",))
    assert group_settings(list(recs.values()))[0].profile == "smoke"  # stored, as run.trained_record writes it
    older = [{k: v for k, v in r.items() if k != "provenance"} for r in recs.values()]  # written before provenance
    inferred = group_settings(older)[0]
    assert (inferred.profile, inferred.inferred) == ("smoke", True)
    for r in recs.values():
        r["provenance"] = {"profile": "cifar10", "overrides": {"dataset": "synthetic", "epochs": 2},
                           "data_source": "generated"}
        records.write_record(records.record_path(tmp_path, r["cell_id"]), r)
    stored = group_settings(list(recs.values()))[0]
    assert (stored.profile, stored.overrides, stored.inferred) == ("cifar10", ["dataset synthetic", "epochs 2"], False)
    monkeypatch.setattr(figures, "load_setting_data", lambda s, data_dir, cache_dir=None: (None, "skipped"))
    md = build_report(tmp_path, tmp_path / "rep")["md"].read_text()
    assert "profile cifar10 (dataset synthetic, epochs 2)" in md and "inferred from the configuration" not in md
    del recs[next(iter(recs))]["provenance"]   # one record without: its setting is said to be inferred
    assert sum(s.inferred for s in group_settings(list(recs.values()))) == 1

def test_budget_is_adequate_only_for_flat_curves_without_stalls(tmp_path):
    # optimizer first: D-sgd's record is the optimizer's, the other ablations' rows added (as a session reuses it)
    recs = write_grid(tmp_path, seeds=2, names=("optimizer", "init", "depth", "batchnorm", "kernel"), epochs=6)
    judge = lambda: budget.judge(group_settings(list(recs.values()))[0])  # noqa: E731
    assert not judge().adequate and "validation top-1 still rising" in judge().reason   # acc x epoch/6
    for r in recs.values():   # flat curves: val top-1 at its final value in every epoch
        for h in r["result"]["history"]:
            h["val_top1"] = r["result"].get("test", {}).get("top1", 10.0)
    assert judge().adequate   # the init ablation's stalled std-0.01 cells are its finding, not the budget's
    d_adam = next(r for r in recs.values() if r["case"] == "D-adam" and r["config"]["seed"] == 1)
    d_adam["status"] = "stalled"
    assert judge().reason == "1 cell stalled, diverged or unjudged: optimizer:D-adam seed 1 (stalled)"
    # one training shown in five ablations' tables (optimizer's D-sgd is depth's D, init's D-kaiming ...):
    # counted in each whose ablation does not make a stall its finding, as the tables show it
    d_adam["status"] = "ok"
    d_sgd = next(r for r in recs.values() if r["case"] == "D-sgd" and r["config"]["seed"] == 0)
    d_sgd["status"] = "stalled"
    rows = group_settings(list(recs.values()))[0].rows
    shared = rows[rows.cell_id == d_sgd["cell_id"]]
    assert sorted(zip(shared.ablation, shared.case)) == [("batchnorm", "D-plain"), ("depth", "D"), ("init", "D-kaiming"),
                                                         ("kernel", "D-3x3"), ("optimizer", "D-sgd")]
    assert judge().reason == ("4 cells stalled, diverged or unjudged: batchnorm:D-plain seed 0 (stalled), depth:D "
                              "seed 0 (stalled), kernel:D-3x3 seed 0 (stalled) and 1 more")
    assert not budget.judge(group_settings(list(write_grid(tmp_path / "two", seeds=1).values()))[0]).adequate


def test_throughput_that_differs_5x_between_seeds_is_flagged_and_never_drawn_below_zero(tmp_path):
    recs = write_grid(tmp_path, seeds=2, names=("optimizer",))
    fast, slow = (r for r in recs.values() if r["case"] == "D-sgd")
    fast["throughput"]["train"] = {"images_per_s": 1000.0, "images_per_s_min": 900.0, "images_per_s_max": 1100.0}
    slow["throughput"]["train"] = {"images_per_s": 200.0, "images_per_s_min": 150.0, "images_per_s_max": 210.0}
    slow["throughput"]["ceiling_fraction"] = 2.08
    setting = group_settings(list(recs.values()))[0]
    table = cost_table(setting, "optimizer").set_index("variant")
    assert table.loc["D-sgd", "train img/s median (min–max)"] == "600 (150–1,100)"
    assert table.loc["D-sgd", "throughput note"].startswith("noisy: train timings spread 158% of the median")
    assert "ceiling error: 1.09× the measured matmul ceiling" in table.loc["D-sgd", "throughput note"]
    of = f" of {slow['amp']}"  # the ceiling's dtype: the one the cells ran in (bfloat16 where the CPU has bf16 units)
    assert table.loc["D-sgd", "of matmul ceiling"] == "error (1.09)" + of
    assert table.loc["D-adam", "throughput note"] == "-" and table.loc["D-adam", "of matmul ceiling"] == "10%" + of
    assert "MMACs" in table.columns   # the tiny smoke model: MACs in millions, not 0.00x GMACs
    ax = throughput_figure(summarise(setting, "optimizer"), "optimizer").axes[0]
    assert ax.get_ylim()[0] >= 0
    assert [label.get_text() for label in ax.get_xticklabels()] == ["D-sgd\n(noisy)", "D-adam", "D-adagrad"]
    drawn = [seg[:, 1] for c in ax.collections for seg in c.get_segments()] + [line.get_ydata() for line in ax.lines]
    assert drawn and min(float(min(y)) for y in drawn) >= 150.0   # whiskers end at the lowest repeat, not below 0


def test_confusion_counts_every_test_image_once():
    data = fake_data()
    always_3 = lambda x: torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()  # noqa: E731
    cm = confusion(always_3, data.test_x, data.test_y, data.mean, data.std, 10, batch=4)
    assert cm.shape == (10, 10) and int(cm.sum()) == len(data.test_y)
    assert (cm[:, 3] == torch.bincount(data.test_y, minlength=10)).all() and int(cm.sum()) == int(cm[:, 3].sum())

def test_report_md_names_no_absolute_path_and_the_html_has_contents(built):
    results, out, recs = built
    md = out["md"].read_text()
    assert str(results) not in md and not re.search(r"(?<![\w.:/~-])/(tmp|root|home|work|usr)/", md)
    assert "`../runs/`" in md and "`../weights/" in md   # relative to the report's folder
    env = md.split("## Environment")[1].split("\n\n")[2]
    assert env.startswith("| device | amp | python | torch |") and "cuda" not in env   # CPU runs: no CUDA columns
    page = out["html"].read_text()
    ids = re.findall(r'<h[1-4] id="([^"]+)"', page)
    links = re.findall(r'<a href="#([^"]+)"', page)
    assert len(ids) == len(set(ids)) and set(links) <= set(ids)
    assert "verdicts" in ids and {"ablation-depth", "claims-setting-1", "environment", "files"} <= set(links)
    assert f'<td style="text-align:right">{len(recs)}</td>' in page   # numbers right-aligned

@pytest.mark.slow
def test_the_report_and_the_tables_place_records_in_the_same_rows(tmp_path, ablations):
    """One session of mixed options: a warm start (init's D-from-A, from a net A trained first), every
    case tuned (--tune lr, two rates), a training scale evaluated (scale's C-S256: an evaluation cell of
    a tuned training cell). The report's rows of each ablation hold the cell ids of <ablation>.csv."""
    done = ablations("--case", "init:D-from-A", "--case", "scale:C-S256", "--tune", "lr", "--tune-grid", "0.01,0.03",
                     *FAST, results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = pd.concat([s.rows for s in group_settings(load_records(tmp_path))])
    for name in ("init", "scale"):
        table = pd.read_csv(tmp_path / f"{name}.csv")
        shown = rows[rows.ablation == name]
        assert len(table) == 1 and table.tuned.all(), name  # one row each, its rate chosen by tuning
        assert (sorted(zip(shown.cell_id, shown.case, shown.tuned, shown.lr))
                == sorted(zip(table.cell_id, table.case, table.tuned, table.lr))), name
    # the cells that are only needed (net A started from, the tuning rates, the training of C-S256) are rows of none
    runs = {p.stem for p in records.runs_dir(tmp_path).glob("*.json")}
    assert len(runs) == 8 and set(rows.cell_id) < runs


def test_pytest_report_option_builds_the_report_at_session_end(tmp_path, ablations):
    """`pytest ablations --report` with every cell already recorded (nothing trains)."""
    write_grid(tmp_path, seeds=1)
    proc = ablations("--seeds", "1", "--report", "-p", "no:randomly", results=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"report written: {tmp_path / 'report' / 'report.html'}" in proc.stdout
    assert (tmp_path / "report" / "report.md").is_file()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement('p'); p.id = 'img-check';
  p.textContent = 'IMAGES-LOADED ' + ok + '/' + imgs.length;
  document.body.appendChild(p);
});
</script>"""


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_with_every_image_loaded(built, tmp_path):
    chromium = _chromium()
    _, out, _ = built
    page = out["html"].read_text()
    n = page.count("<img")
    probe = tmp_path / "probe.html"   # the report plus a check script; the report itself has no script
    probe.write_text(page.replace("</body>", CHECK + "</body>"))
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                               "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    marker = re.search(r"IMAGES-LOADED (\d+)/(\d+)", proc.stdout)
    assert marker, f"no marker in the DOM; chromium said: {proc.stderr[-2000:]}"
    assert marker.groups() == (str(n), str(n)) and n > 10


def test_tables_3_to_5_set_our_test_methods_beside_the_papers_and_claims_pair_two_methods(built):
    from vggbench.report.references import beside_ours
    from vggbench.report.text import mean_std_text

    _, out, recs = built
    s = next(s for s in group_settings(list(recs.values())) if "eval_dense_multi_crop_top1" in s.rows)
    ref = load_references()
    t5 = beside_ours(s, ref["paper_table5"], ref["sources"])
    row = t5[(t5.config == "D") & (t5.method == "multi-crop & dense")].iloc[0]
    ours = s.rows[(s.rows.ablation == "evaluation") & (s.rows.case == "D-S256-512")]
    assert row["top1_err"] == 24.4 and row["ours: measured as"] == "eval_dense_multi_crop_top1"
    assert row["ours top-1 err %"] == mean_std_text(100 - ours["eval_dense_multi_crop_top1"])
    assert row["ours top-5 err %"] == mean_std_text(100 - ours["eval_dense_multi_crop_top5"])
    t3 = beside_ours(s, ref["paper_table3_scale"], ref["sources"])
    assert t3[(t3.config == "E") & (t3.train_scale == "256-512")].iloc[0]["ours: measured as"] == "eval_single_scale_top1"
    md = out["md"].read_text()
    for what in ("paper_table3_scale", "paper_table4", "paper_table5"):
        assert ref[what]["what"] in md
    # two methods on the same nets, paired by seed: the made-up records put each method a point above the last
    judged = judge_claims(s, [c for c in ref["claims"] if c["id"] == "eval-combined-vs-dense-D"]).iloc[0]
    assert judged.comparison == "D-S256-512: dense + multi-crop − multi-scale dense"
    assert judged.effect == pytest.approx(2.0) and judged.n == SEEDS and judged.verdict == "reproduced"


def test_a_smoke_setting_on_an_image_folder_is_not_called_synthetic_glyphs():
    from vggbench.report.sections import section_setting

    rec = make_record(cells_for("depth", Options())[0])
    rec["config"]["data"]["dataset"] = "imagefolder"
    rec["provenance"] = {"profile": "smoke"}
    [s] = group_settings([rec])
    text = "\n".join(b.text for b in section_setting(s, budget.judge(s)) if b.text)
    assert "glyphs" not in text and "imagefolder at 32px, a narrow network" in text
    assert "profile: **smoke** (stored with the records): its settings on imagefolder instead of synthetic" in text
