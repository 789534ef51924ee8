"""The pitfalls ablation: a ReLU after the last linear layer (built on purpose, recorded as what it does,
e.g. `stalled`), and the readings of a run's per-epoch history (records.readings): the epoch chosen on
test vs on val, "validation" on the training set vs held-out val, judged as claims like any other."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vggbench import records
from vggbench.cells import cells_for
from vggbench.data import ImageData
from vggbench.grid import ABLATIONS
from vggbench.models import ModelSpec, build_model
from vggbench.options import Options
from vggbench.report import budget
from vggbench.report.claims import judge_claims
from vggbench.report.references import load_references
from vggbench.report.sections import readings_table
from vggbench.report.settings import group_settings
from vggbench.trainer import TrainSpec, train

SMALL = dict(config="A", width=0.125, num_classes=10, image_size=32)


@pytest.mark.parametrize("head", ["linear", "compact"])
def test_the_final_relu_is_one_module_after_the_last_linear_layer(head):
    torch.manual_seed(0)
    right, wrong = build_model(ModelSpec(head=head, **SMALL)), build_model(ModelSpec(head=head, final_relu=True, **SMALL))
    assert isinstance(wrong.classifier[-1], nn.ReLU) and isinstance(wrong.classifier[-2], nn.Linear)
    assert not isinstance(right.classifier[-1], nn.ReLU)
    assert right.state_dict().keys() == wrong.state_dict().keys()  # the same weights load into either
    wrong.load_state_dict(right.state_dict())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(wrong.eval()(x), right.eval()(x).clamp_min(0))
    assert ModelSpec(final_relu=True, **SMALL).name.endswith("relu-out")


def test_the_final_relu_is_in_a_cells_identity_only_when_set():
    cells = {c.case: c for c in cells_for("pitfalls", Options())}
    assert set(cells) == {"sgd", "sgd-final-relu", "adagrad", "adagrad-final-relu"}
    assert cells["sgd-final-relu"].config()["model"]["final_relu"] is True
    assert "final_relu" not in cells["sgd"].config()["model"]  # unset: every earlier cell keeps its id
    assert all(c.config()["train"]["readings"] is True for c in cells.values())
    depth_d = next(c for c in cells_for("depth", Options()) if c.case == "D")
    assert "readings" not in depth_d.config()["train"] and "final_relu" not in depth_d.config()["model"]
    # the pitfall cells are D as the profile trains it, with the readings on
    assert cells["sgd"].model == depth_d.model and cells["sgd"].train == depth_d.train.replace(readings=True)


def _tiny_data(n: int = 64) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = lambda k: torch.randint(0, 256, (k, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    y = lambda k: torch.arange(k) % 10  # noqa: E731
    return ImageData("tiny", [f"c{i}" for i in range(10)], x(n), y(n), x(30), y(30), x(20), y(20))


def test_a_dead_final_relu_sits_at_ln_c_and_is_recorded_stalled_not_an_error():
    torch.manual_seed(0)
    model = build_model(ModelSpec(head="linear", final_relu=True, **SMALL))
    with torch.no_grad():
        model.classifier[-2].bias.fill_(-1e3)  # every logit below 0: the ReLU outputs 0, passes no gradient
    result = train(model, _tiny_data(), TrainSpec(epochs=4, batch_size=16, augment=False), torch.device("cpu"))
    assert result["status"] == "stalled" and result["epochs_run"] == 2  # stops at the stall window
    assert [h["train_loss"] for h in result["history"]] == pytest.approx([math.log(10)] * 2, abs=1e-6)
    assert result["test"]["top1"] == pytest.approx(10.0)  # every class tied at 0: the first class, 2 of 20


def test_the_readings_are_evaluated_every_epoch_and_the_last_is_the_reported_test():
    torch.manual_seed(0)
    data = _tiny_data()
    result = train(build_model(ModelSpec(head="linear", **SMALL)), data,
                   TrainSpec(epochs=3, batch_size=16, augment=False, readings=True, stall_epochs=5), torch.device("cpu"))
    hist = result["history"]
    assert len(hist) == 3 and all({"test_top1", "test_loss", "train_eval_top1"} <= set(h) for h in hist)
    # test is scored in steps of 5 points (20 images), "validation" on train in steps of 100/30 (val's size)
    assert all(h["test_top1"] % 5 == 0 and round(h["train_eval_top1"] * 30 / 100, 6).is_integer() for h in hist)
    assert hist[-1]["test_top1"] == result["test"]["top1"]  # the same net, the same images
    without = train(build_model(ModelSpec(head="linear", **SMALL)), data,
                    TrainSpec(epochs=1, batch_size=16, augment=False), torch.device("cpu"))
    assert "test_top1" not in without["history"][0]


def test_readings_from_a_history():
    hist = [{"epoch": 1, "val_top1": 30.0, "test_top1": 31.0, "train_eval_top1": 33.0},
            {"epoch": 2, "val_top1": 45.0, "test_top1": 44.0, "train_eval_top1": 50.0},
            {"epoch": 3, "val_top1": 45.0, "test_top1": 47.5, "train_eval_top1": 60.0},
            {"epoch": 4, "val_top1": 41.0, "test_top1": 46.0, "train_eval_top1": 66.0}]
    assert records.readings(hist) == {
        "test_at_val_epoch_top1": 44.0, "val_epoch": 2,    # val ties at epochs 2 and 3: the first is chosen
        "best_test_top1": 47.5, "test_epoch": 3,           # chosen on test: 3.5 points above
        "last_val_top1": 41.0, "last_train_eval_top1": 66.0}
    assert records.readings([{"epoch": 1, "val_top1": 30.0, "train_loss": 2.0}]) == {}  # a cell without them
    assert records.readings([]) == {}


# per seed: the epoch chosen on test is BIAS[s] points above test at the epoch chosen on val, and the
# training images score GAP[s] points above held-out val at the last epoch
BIAS, GAP = [2.0, 2.5, 3.0], [10.0, 10.1, 10.2]


def _record(cell) -> dict:
    s, stalled = cell.seed, cell.model.final_relu
    if stalled:
        hist = [{"epoch": e, "train_loss": math.log(10), "val_top1": 10.0, "test_top1": 10.0, "train_eval_top1": 10.0}
                for e in (1, 2)]
    else:
        val, test = [30.0, 40.0, 46.0, 45.0], [31.0, 41.0, 44.0 + s, 44.0 + s + BIAS[s]]
        hist = [{"epoch": e + 1, "train_loss": 1.0, "val_top1": v, "test_top1": t, "train_eval_top1": v + GAP[s]}
                for e, (v, t) in enumerate(zip(val, test))]
    record = {"cell_id": cell.id, "config": cell.config(), "status": "stalled" if stalled else "ok",
              "provenance": {"profile": "smoke"}, "result": {"history": hist, "test": {"top1": hist[-1]["test_top1"]}}}
    return records.with_membership(record, cell.membership())  # the row it is, as run_cell writes it


def test_the_pitfall_claims_are_judged_from_the_per_epoch_history():
    recs = [_record(c) for c in cells_for("pitfalls", Options(seeds=3))]
    setting = group_settings(recs)[0]
    claims = [c for c in load_references()["claims"] if c["ablation"] == "pitfalls"]
    judged = judge_claims(setting, claims).set_index("id")
    bias = judged.loc["pitfall-select-on-test-sgd"]
    assert bias.effect == pytest.approx(2.5) and bias.n == 3 and bias.verdict == "reproduced"
    assert 1.0 < bias.low < 2.5 < bias.high < 4.0  # paired t over 3 seeds: 2.5 +- 4.303 x 0.5 / sqrt(3)
    gap = judged.loc["pitfall-train-as-val"]
    assert gap.effect == pytest.approx(10.1) and gap.verdict == "reproduced"
    relu = judged.loc["pitfall-final-relu-sgd"]  # 10% (stalled) vs the correct head's 44 + s + BIAS[s]
    assert relu.effect == pytest.approx(10.0 - (46.0 + 47.5 + 49.0) / 3) and relu.verdict == "reproduced"
    assert relu.runs == "stalled 3 / ok 3"
    # a stall is what the final ReLU does, measured: it does not count against the budget
    assert not any("stalled" in c for c in budget._failed_cells(setting))
    assert ABLATIONS["pitfalls"].display.stall_is_outcome
    shown = readings_table(setting, "pitfalls").set_index("variant")  # the ablation's section shows the readings
    assert shown.loc["sgd", "bias of choosing on test (points)"] == "2.5 ± 0.5"
    assert shown.loc["sgd", "train − val gap (points)"] == "10.1 ± 0.1"
    assert readings_table(setting, "depth").empty
