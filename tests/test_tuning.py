"""Learning-rate tuning (vggbench/tuning.py): a grid per case, chosen on validation only, then the seeds."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from vggbench import records, tuning
from vggbench.cells import cells_for, tuned
from vggbench.profiles import PROFILES
from vggbench.grid import ABLATIONS
from vggbench.options import Options
from vggbench.report import build_report



def record(status: str, val: float, test: float) -> dict:
    return {"status": status, "result": {"best_val_top1": val, "test": {"top1": test, "top5": test, "loss": 1.0}}}


CANDIDATES = [(0.1, record("diverged", 90.0, 90.0)), (0.03, record("ok", 40.0, 20.0)),
              (0.01, record("ok", 55.0, 10.0)), (0.003, record("stalled", 60.0, 60.0)),
              (0.001, record("unjudged", 55.0, 80.0))]


def test_choice_is_the_best_validation_rate_never_a_failed_one():
    # 0.1 (diverged) and 0.003 (stalled) have the highest numbers but are not usable; 0.01 and
    # 0.001 tie on validation: the smaller rate wins
    assert tuning.choose(CANDIDATES) == 0.001
    assert tuning.choose([(0.1, record("diverged", 90.0, 90.0)), (0.3, {"status": "error"})]) is None


def test_test_accuracy_never_changes_the_choice():
    chosen = tuning.choose(CANDIDATES)
    tests = [r["result"]["test"]["top1"] for _, r in CANDIDATES]
    for shift in range(1, len(tests)):  # every rotation of the test accuracies over the candidates
        permuted = copy.deepcopy(CANDIDATES)
        for (_, r), top1 in zip(permuted, tests[shift:] + tests[:shift]):
            r["result"]["test"] = {"top1": top1, "top5": 100.0 - top1, "loss": top1}
        assert tuning.choose(permuted) == chosen
    without_test = [(lr, {**r, "result": {"best_val_top1": r["result"]["best_val_top1"]}}) for lr, r in CANDIDATES]
    assert tuning.choose(without_test) == chosen  # it does not even need them


def test_tuned_cases_get_a_log_grid_around_their_own_rate():
    cells = {c.case: c for c in cells_for("optimizer", Options(tune="lr"))}
    assert cells["D-sgd"].tune == (0.002, 0.00632, 0.02, 0.0632, 0.2)
    assert cells["D-adam"].tune == (0.0001, 0.000316, 0.001, 0.00316, 0.01)
    assert cells_for("optimizer", Options(tune="lr", tune_grid=(0.1, 0.01)))[0].tune == (0.1, 0.01)
    assert all(not c.tune for c in cells_for("optimizer", Options()))  # smoke: fixed defaults
    with pytest.raises(ValueError, match="--tune lr and --lr do not combine: --lr fixes every cell's rate"):
        cells_for("optimizer", Options(tune="lr", lr=0.01))
    assert not tuned(ABLATIONS["optimizer"], PROFILES["cpu"], Options(profile="cpu", lr=0.01))  # --lr fixes the rate
    assert tuned(ABLATIONS["optimizer"], PROFILES["cpu"], Options(profile="cpu"))
    assert ABLATIONS["optimizer"].tune_by_default
    untuned = cells_for("optimizer", Options())[0]
    assert cells["D-sgd"].id != untuned.id   # before tuning, a tuned case is not the untuned cell
    grid = cells["D-adam"].tuning_cells()
    assert [t.case for t in grid] == [f"D-adam@lr={lr:g}" for lr in cells["D-adam"].tune]
    assert {t.seed for t in grid} == {0} and all(t.config()["role"] == "tuning" for t in grid)


@pytest.mark.slow
def test_tune_lr_session_records_the_grid_and_runs_the_seeds_at_the_chosen_rate(tmp_path, ablations):
    run = ablations("-k", "optimizer and (sgd or adam)", "--tune", "lr", "--tune-grid", "0.02,0.002", "--epochs", "1",
                    "--train-subset", "200", "--test-subset", "100", "--seeds", "2", results=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout
    table = pd.read_csv(tmp_path / "optimizer.csv")
    assert sorted(table.case) == ["D-adam", "D-adam", "D-sgd", "D-sgd"] and table.tuned.all()
    recs = [records.read_record(p) for p in sorted(records.runs_dir(tmp_path).glob("*.json"))]
    tuning_recs = [r for r in recs if r["config"].get("role") == "tuning"]
    assert sorted(r["case"] for r in tuning_recs) == ["D-adam@lr=0.002", "D-adam@lr=0.02", "D-sgd@lr=0.002",
                                                      "D-sgd@lr=0.02"]  # one per rate, shared by the seeds
    finals = [r for r in recs if "tuning" in r]
    assert len(finals) == 4
    for r in finals:
        t = r["tuning"]
        by_lr = {c["lr"]: c for c in t["cells"]}
        assert t["grid"] == [0.02, 0.002] and t["by"] == "best_val_top1"
        assert t["chosen_lr"] == tuning.choose([(lr, {"status": c["status"], "result": {"best_val_top1":
                                                c["best_val_top1"]}}) for lr, c in by_lr.items()])
        assert r["lr"] == r["config"]["train"]["lr"] == t["chosen_lr"]
        assert {c["cell_id"] for c in t["cells"]} <= {x["cell_id"] for x in tuning_recs}
    assert set(table.lr) <= {0.02, 0.002}
    md = build_report(tmp_path)["md"].read_text()   # the report: the sensitivity figure, claims marked tuned
    optimizer = md.split("### Ablation: optimizer")[1].split("\n### ")[0]
    assert "figures/s1-optimizer-lr.png" in optimizer and "tuned: 4 tuning runs" in optimizer
    claims = [line for line in md.splitlines() if "| D-sgd − D-adam |" in line and "Wilson" in line]
    assert len(claims) == 1 and "| tuned |" in claims[0]   # the claims table marks the protocol
    tuning_only = [r for r in recs if r["config"].get("role") == "tuning"]
    assert not [line for line in md.splitlines() if any(r["case"] in line for r in tuning_only)]  # never seeds
    summary = run.stdout[run.stdout.index("vggbench: optimizer"):]
    assert "tuned" in summary.splitlines()[1]   # the table shows the chosen rate and that it was tuned
