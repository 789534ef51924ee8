"""--classes: a subset of a dataset's classes, part of the data's identity, the record and the report;
its splits stratified within the subset; bad input one line (exit 4 under pytest)."""
from __future__ import annotations

import argparse

import pytest
import torch

from vggbench import records
from vggbench.cells import baseline, cells_for
from vggbench.data import DataError, DataSpec, load_data
from vggbench.data.synthetic import CLASSES
from vggbench.options import Options, class_list
from vggbench.profiles import PROFILES
from vggbench.report.settings import group_settings

A, B, C = CLASSES[0], CLASSES[1], CLASSES[2]


def test_class_list_reads_names_and_indices():
    assert class_list("airplane, automobile,bird") == ("airplane", "automobile", "bird")
    assert class_list("0,1,2") == ("0", "1", "2")
    assert class_list("airplane") == ("airplane",)  # refused against the data: one class (below)
    with pytest.raises(argparse.ArgumentTypeError, match="names no class; give two or more names"):
        class_list(" , ")


def test_names_and_indices_in_any_order_are_one_identity_and_not_the_whole_dataset():
    by_name = baseline(Options(classes=(C, A, B)))
    by_index = baseline(Options(classes=("2", "0", "1")))
    assert by_name.data.classes == by_index.data.classes == (A, B, C)  # the dataset's order
    assert by_name.model.num_classes == 3
    assert by_name.data.identity()["classes"] == [A, B, C]
    assert "classes" not in baseline(Options()).data.identity()  # the whole dataset's ids are unchanged
    ids = lambda opts: [c.id for c in cells_for("depth", opts)]  # noqa: E731
    assert ids(Options(classes=(C, A, B))) == ids(Options(classes=("0", "1", "2")))
    assert not set(ids(Options(classes=(A, B, C)))) & set(ids(Options()))
    assert not set(ids(Options(classes=(A, B)))) & set(ids(Options(classes=(A, B, C))))


def test_the_subset_keeps_every_image_of_its_classes_in_every_split_relabelled():
    whole = load_data(DataSpec())
    sub = load_data(baseline(Options(classes=("1", "3"))).data)
    assert sub.classes == [CLASSES[1], CLASSES[3]]
    for split in ("train", "val", "test"):
        y_whole, y_sub = getattr(whole, f"{split}_y"), getattr(sub, f"{split}_y")
        assert sorted(y_sub.unique().tolist()) == [0, 1]
        assert torch.bincount(y_sub).tolist() == [int((y_whole == 1).sum()), int((y_whole == 3).sum())]
        # the very images of those classes, in their order: label 1 -> 0, label 3 -> 1
        keep = (y_whole == 1) | (y_whole == 3)
        assert torch.equal(getattr(sub, f"{split}_x"), getattr(whole, f"{split}_x")[keep])
        assert torch.equal(y_sub, (y_whole[keep] == 3).long())


def test_train_and_test_subsets_are_stratified_within_the_chosen_classes():
    data = load_data(baseline(Options(classes=(A, B, C), train_subset=301, test_subset=90)).data)
    assert len(data.train_y) == 301 and len(data.test_y) == 90
    counts = torch.bincount(data.train_y).tolist()
    assert len(counts) == 3 and max(counts) - min(counts) <= 1
    assert torch.bincount(data.test_y).tolist() == [30, 30, 30]


def test_a_profiles_subsets_are_capped_at_what_the_chosen_classes_have(monkeypatch):
    # a profile sized for all ten classes: 3000 training images, 1500 test; two synthetic classes have
    # about 1000 / 400 (the whole split of those classes, so the subset is dropped: all of it)
    sized = PROFILES["smoke"].replace(data=PROFILES["smoke"].data.replace(train_subset=3000, test_subset=150))
    monkeypatch.setitem(PROFILES, "smoke", sized)
    base = baseline(Options(classes=(A, B)))
    whole = load_data(base.data.replace(train_subset=None, test_subset=None))
    assert base.data.train_subset is None and len(load_data(base.data).train_y) == len(whole.train_y)
    assert base.data.test_subset == 150 and len(load_data(base.data).test_y) == 150  # fewer than there are: kept
    # the user's own subset is never capped: too large stays an error
    with pytest.raises(DataError, match="--train-subset 3000 is larger than the"):
        load_data(baseline(Options(classes=(A, B), train_subset=3000)).data)


@pytest.mark.parametrize("wanted,message", [
    (("nosuchclass", A), "--classes: synthetic has no class 'nosuchclass'; give names or indices 0..9 of: "),
    (("0", "10"), "--classes: synthetic has no class '10'; give names or indices 0..9"),
    ((A, "0"), f"--classes {A},0: names one class of synthetic; a classifier needs at least 2"),
    ((A,), f"--classes {A}: names one class of synthetic; a classifier needs at least 2"),
    (("nosuchclass",), "--classes: synthetic has no class 'nosuchclass'"),
])
def test_unknown_or_single_classes_are_one_line_errors(wanted, message):
    with pytest.raises(DataError) as err:
        baseline(Options(classes=wanted))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_record_the_table_and_the_report_name_the_classes():
    cell = next(c for c in cells_for("depth", Options(classes=(A, B, C))) if c.case == "D")
    assert cell.config()["data"]["classes"] == [A, B, C] and cell.model.num_classes == 3
    record = {"cell_id": cell.id, "config": cell.config(), "status": "ok",
              "result": {"history": [], "test": {"top1": 50.0}}, "provenance": {"profile": "smoke"}}
    record = records.with_membership(record, cell.membership())  # the row it is, as run_cell writes it
    row = records.flatten(record, cell.membership())
    assert row["classes"] == f"{A},{B},{C}" and row["dataset"] == "synthetic"
    setting = group_settings([record])[0]
    assert f"dataset synthetic (3 classes: {A}, {B}, {C})" in setting.caption


@pytest.mark.parametrize("classes,message", [
    (A, f"--classes {A}: names one class of synthetic; a classifier needs at least 2"),
    (f"nosuchclass,{A}", "--classes: synthetic has no class 'nosuchclass'; give names or indices 0..9 of: "),
])
def test_bad_classes_under_pytest_are_a_usage_error(ablations, tmp_path, classes, message):
    run = ablations("--collect-only", "--classes", classes, results=tmp_path / "results")
    assert run.returncode == 4, run.stdout + run.stderr
    assert len([line for line in run.stderr.splitlines() if message in line]) == 1, run.stderr  # one line
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()  # nothing written


def test_a_session_with_classes_is_collected_again(tmp_path):
    from vggbench import tables
    opts = Options(classes=(A, B, C))
    tables.save_session(tmp_path, opts, ["depth"])
    again, names = tables.load_session(tmp_path)
    assert again == opts and names == ["depth"]
    assert [c.id for c in cells_for("depth", again)] == [c.id for c in cells_for("depth", opts)]
