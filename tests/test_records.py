"""Records: atomic writes, checksums, skipping finished cells, tables."""
import json
import os

import pytest

from vggbench import notices, records, run
from vggbench.cells import cells_for
from vggbench.options import Options
from vggbench.run import problems, run_cell
from vggbench.grid import ABLATIONS


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    records.atomic_write(path, "old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        records.atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_record_round_trip_and_checksum(tmp_path):
    path = tmp_path / "runs" / "x.json"
    written = records.write_record(path, {"a": 1, "b": [1.5, "x"]})
    assert records.read_record(path, check=False) == written  # not a cell's record: the checksum only
    data = json.loads(path.read_text())
    data["a"] = 2  # tampered or half-edited: not trusted
    path.write_text(json.dumps(data))
    with notices.collecting() as said:
        assert records.read_record(path) is None  # a reader (report, collect) renames nothing
    assert path.exists() and said == [f"{path} is corrupt (checksum fails): skipped; running its cell again sets it aside"]
    with notices.collecting() as said:
        assert records.read_record(path, set_aside_corrupt=True) is None
    aside = list(path.parent.glob("x.json.*.corrupt"))
    assert not path.exists() and len(aside) == 1
    assert said == [f"{path} is corrupt (checksum fails): set aside as {aside[0].name}; its cell runs again"]
    path.write_text("{")  # damaged again: the first set-aside copy is kept, not overwritten
    with notices.collecting():
        records.read_record(path, set_aside_corrupt=True)
    assert len(set(path.parent.glob("x.json.*.corrupt"))) == 2 and json.loads(aside[0].read_text())["a"] == 2


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"checksum": "0"}'])
def test_unreadable_records_are_set_aside(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    with notices.collecting() as said:
        assert records.read_record(path, set_aside_corrupt=True) is None
    assert not path.exists() and len(said) == 1


def test_files_are_created_readable_as_the_umask_allows(tmp_path):
    old = os.umask(0o027)
    try:
        records.atomic_write(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    records.atomic_write(tmp_path / "b.json", "{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~old


def test_cell_ids_hash_the_complete_configuration():
    opts = Options(seeds=2)
    depth = cells_for("depth", opts)
    assert len(depth) == 12 and len({c.id for c in depth}) == 12
    # the same configuration reached from two ablations is one cell
    d_depth = next(c for c in depth if c.case == "D" and c.seed == 0)
    d_sgd = next(c for c in cells_for("optimizer", opts) if c.case == "D-sgd" and c.seed == 0)
    assert d_depth.id == d_sgd.id
    assert cells_for("depth", Options(epochs=3))[0].id != cells_for("depth", Options())[0].id
    # where the data lives is not part of the identity
    assert cells_for("depth", Options(data_dir="/a"))[0].id == cells_for("depth", Options(data_dir="/b"))[0].id


def test_case_ids_work_with_k():
    ids = {a: [c.test_id for c in cells_for(a, Options())] for a in ABLATIONS}
    assert ids["kernel"] == ["B-3x3-s0", "B-large-s0", "D-3x3-s0", "D-large-s0"]
    assert [i for i in ids["optimizer"] if "adam" in i] == ["D-adam-s0"]
    assert len(ids["depth"]) == 6


@pytest.fixture
def fast_cell():
    opts = Options(epochs=1, train_subset=200, test_subset=100)
    return next(c for c in cells_for("depth", opts) if c.case == "A")


def test_run_cell_writes_then_reuses(tmp_path, fast_cell, monkeypatch):
    first = run_cell(fast_cell, tmp_path)
    assert first["reused"] is False and problems(first) == []
    assert records.record_path(tmp_path, fast_cell.id).exists()
    assert records.weights_path(tmp_path, fast_cell.id).exists()
    assert not records.record_path(tmp_path, fast_cell.id).with_suffix(".ckpt").exists()
    assert [p.name for p in records.runs_dir(tmp_path).iterdir()] == [f"{fast_cell.id}.json"]
    assert [p.name for p in (tmp_path / ".locks").iterdir()] == [f"{fast_cell.id}.lock"]  # locks out of runs/
    assert first["params"] == 145_210 and first["config"]["seed"] == 0
    assert set(first["versions"]) >= {"torch", "python"} and first["device"].startswith("CPU")

    def must_not_run(*a, **k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(run, "execute", must_not_run)
    second = run_cell(fast_cell, tmp_path)
    assert second["reused"] is True and second["checksum"] == first["checksum"]
    rerun = run_cell(fast_cell, tmp_path, rerun=True)  # an exception becomes an error record
    assert rerun["status"] == "error" and "recomputed" in rerun["error"]["message"]


def test_table_has_the_issue_columns(tmp_path, fast_cell):
    rec = run_cell(fast_cell, tmp_path)
    df = records.table([records.flatten(rec, {"ablation": "depth", "case": "A", "tuned": False})])
    for col in ("config", "params", "gmacs", "gflops", "train_images_per_s", "infer_images_per_s", "device", "torch",
                "test_top1", "status"):
        assert df[col].notna().all(), col
    records.write_table(df, tmp_path / "depth.csv")
    assert (tmp_path / "depth.csv").read_text().splitlines()[0].startswith("ablation,case,seed,config")


def test_problems_flags_invalid_measurements(tmp_path, fast_cell):
    rec = run_cell(fast_cell, tmp_path)
    assert problems({**rec, "status": "crashed"})[0].startswith("status 'crashed'")
    assert any("GMACs" in p for p in problems({**rec, "gmacs": rec["gmacs"] * 1.1}))
    bad = {**rec, "result": {**rec["result"], "test": {"top1": float("nan")}}}
    assert any("not finite" in p for p in problems(bad))


def test_a_status_is_one_enumeration_and_a_record_holds_its_plain_string():
    """vggbench.statuses.Status: the trainer's verdicts and "error", equal to the old strings; a record
    holds the plain string (xdist sends only plain types between processes)."""
    from vggbench.run import error_record
    from vggbench.statuses import TRAINED, Status
    from vggbench.trainer import STATUSES

    assert [s.value for s in Status] == ["ok", "diverged", "stalled", "unjudged", "error"]
    assert STATUSES == TRAINED and Status.ERROR not in TRAINED
    assert Status.OK == "ok" and json.dumps({"s": Status.STALLED}) == '{"s": "stalled"}' and f"{Status.ERROR}" == "error"
    record = error_record(cells_for("depth", Options(epochs=1), ["depth:A"])[0], RuntimeError("x"))
    assert record["status"] == Status.ERROR and type(record["status"]) is str
