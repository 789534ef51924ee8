"""Watching runs: live progress (pytest with capture on, serial and pytest-xdist), TensorBoard
curves (one point per epoch, also after a kill and resume) and `vggbench status`."""
import io
import json
import pickle
import re
import time
from types import SimpleNamespace

import pytest
from filelock import FileLock
from submitit.helpers import DelayedSubmission

from helpers import record_of, scalars
from vggbench import progress, records, status
from vggbench.cells import cells_for
from vggbench.cli import main
from vggbench.curves import Curves, curves_dir
from vggbench.launch import CellJob
from vggbench.options import Options
from vggbench.progress import BarDisplay, LineDisplay, Session
from vggbench.run import run_cell

TWO_CELLS = ["-k", "depth and (A-s0 or A-LRN)", "--epochs", "2", "--train-subset", "100", "--test-subset", "50",
             "--batch-size", "50"]
EPOCH_LINE = r"vggbench depth {case}-s0: epoch {k}/2  train loss [\d.]+  val top-1 [\d.]+%  \d+ img/s  cell ETA \d+:\d\d"


@pytest.mark.slow
def test_per_epoch_lines_reach_the_terminal_with_capture_on_serial_and_xdist(tmp_path, ablations):
    serial = ablations(*TWO_CELLS, results=tmp_path)  # capture on: pytest's default
    assert serial.returncode == 0, serial.stdout + serial.stderr
    for case in ("A", "A-LRN"):
        for k in (1, 2):
            assert re.search(EPOCH_LINE.format(case=case, k=k) + r"  session \d/2 done, ETA \d+:\d\d", serial.stdout)
        assert re.search(rf"vggbench depth {case}-s0: \w+, test top-1 [\d.]+% in \d+:\d\d", serial.stdout)
    # each cell's curves: every per-epoch scalar with one point per epoch
    for case in ("A", "A-LRN"):
        curves = scalars(curves_dir(tmp_path, "depth", case, 0))
        for tag in ("Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val", "Accuracy/val_top5", "LR",
                    "Throughput/train_images_per_s"):
            assert [step for step, _ in curves[tag]] == [1, 2], tag

    xdist = ablations("-n", "2", "--rerun", *TWO_CELLS, results=tmp_path)
    assert xdist.returncode == 0, xdist.stdout + xdist.stderr
    for case in ("A", "A-LRN"):  # the workers' lines reach the controller's terminal (its stderr)
        for k in (1, 2):
            assert re.search(r"\[gw[01]\] " + EPOCH_LINE.format(case=case, k=k), xdist.stderr), xdist.stderr
    for case in ("A", "A-LRN"):  # --rerun starts the curves over: still one point per epoch
        assert [s for s, _ in scalars(curves_dir(tmp_path, "depth", case, 0))["Loss/train"]] == [1, 2]


@pytest.fixture
def tiny_cell():
    opts = Options(epochs=2, train_subset=100, test_subset=50, batch_size=50)
    return next(c for c in cells_for("depth", opts) if c.case == "A")


def test_run_cell_shows_epochs_then_reused(tmp_path, tiny_cell):
    lines = []
    first = run_cell(tiny_cell, tmp_path, display=LineDisplay(lines.append))
    assert len(lines) == 3
    for k in (1, 2):  # no session given: no session ETA
        assert re.fullmatch(EPOCH_LINE.format(case="A", k=k), lines[k - 1]), lines
    top1 = first["result"]["test"]["top1"]
    assert re.fullmatch(rf"vggbench depth A-s0: {first['status']}, test top-1 {top1:.1f}% in \d+:\d\d", lines[2])
    assert not progress.heartbeat_path(tmp_path, tiny_cell.id).exists()  # the record says it all now
    lines.clear()
    run_cell(tiny_cell, tmp_path, display=LineDisplay(lines.append))
    assert lines == [f"vggbench depth A-s0: reused ({first['status']}, test top-1 "
                     f"{first['result']['test']['top1']:.1f}%)"]


def rows(*epochs, loss=1.0):
    return [{"epoch": k, "epochs": 3, "train_loss": loss + k, "train_top1": 10.0 * k, "val_loss": loss,
             "val_top1": 5.0 * k, "val_top5": 50.0, "lr": 0.1, "images": 100, "train_s": 0.5, "epoch_s": 0.6}
            for k in epochs]


def test_a_resumed_cell_continues_its_curve_without_duplicates(tmp_path, tiny_cell):
    killed = Curves(tmp_path, tiny_cell)
    for row in rows(1, 2):  # epoch 2 was written, then the process died before epoch 2's checkpoint
        killed.epoch(row)
    killed.writer.flush()   # what a killed process leaves: its file, never closed
    time.sleep(1.1)         # a resumed process starts later: its event file's name sorts after
    resumed = Curves(tmp_path, tiny_cell)
    for row in rows(2, 3, loss=7.0):  # resumed from epoch 1's checkpoint
        resumed.epoch(row)
    resumed.finish({"status": "ok", "result": {"epochs_run": 3, "best_val_top1": 15.0, "test": {"top1": 14.0}}})
    curves = scalars(curves_dir(tmp_path, "depth", "A", 0))
    assert curves["Loss/train"] == [(1, 2.0), (2, 9.0), (3, 10.0)]
    assert [s for s, _ in curves["Accuracy/val"]] == [1, 2, 3]
    assert curves["hparam/test_top1"] == [(3, 14.0)]
    assert len(list(curves_dir(tmp_path, "depth", "A", 0).glob("events.out.tfevents.*"))) == 2

    again = Curves(tmp_path, tiny_cell)  # a new run from epoch 1 (--rerun): a new curve
    again.epoch(rows(1)[0])
    again.close()
    assert scalars(curves_dir(tmp_path, "depth", "A", 0))["Loss/train"] == [(1, 2.0)]


def test_status_lists_each_state(tmp_path, tiny_cell, capsys):
    cells = cells_for("depth", Options(epochs=2, train_subset=100, test_subset=50, batch_size=50))
    done, reused, failed, running, interrupted, fresh = cells
    status.save_selection(tmp_path, cells)
    rec = {"status": "ok", "result": {"epochs_run": 2, "test": {"top1": 31.5}}}
    records.write_record(records.record_path(tmp_path, done.id), record_of(done, **rec, created=progress.now()))
    records.write_record(records.record_path(tmp_path, reused.id),
                         record_of(reused, **rec, created="2020-01-01T00:00:00+00:00"))
    records.write_record(records.record_path(tmp_path, failed.id), record_of(failed,
        status="error", error={"type": "RuntimeError", "message": "CUDA error: an illegal memory access\nmore"}))
    lock = records.lock_path(tmp_path, running.id)
    lock.parent.mkdir(parents=True)
    progress.write_heartbeat(tmp_path, running, {**rows(1)[0], "epochs": 2})
    (records.runs_dir(tmp_path) / f"{interrupted.id}.ckpt").write_bytes(b"state")
    records.lock_path(tmp_path, fresh.id).touch()  # a lock nobody holds: not running
    # submitit's files for two jobs (as launch.py submits them): one finished, one still out
    for job_id, cell, result in (("4241", done, ("success", {})), ("4242", running, None)):
        folder = tmp_path / "submitit" / job_id
        folder.mkdir(parents=True)
        with open(folder / f"{job_id}_submitted.pkl", "wb") as f:
            pickle.dump(DelayedSubmission(CellJob(cell.id), cell, str(tmp_path)), f)
        if result:
            with open(folder / f"{job_id}_0_result.pkl", "wb") as f:
                pickle.dump(result, f)

    with FileLock(str(lock)):  # held by the cell's process (run_cell) while it trains
        assert main(["status", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = {line.split()[1]: line.rstrip() for line in out.splitlines()[1:7]}
    assert re.fullmatch(r"\s*depth\s+A\s+0\s+done\s+2/2\s+ok, test top-1 31.5%\s+4241 COMPLETED\s+" + done.id, table["A"])
    assert re.search(r"\s+reused\s+2/2\s+ok, test top-1 31.5%", table["A-LRN"])
    assert re.search(r"\s+failed\s+RuntimeError: CUDA error: an illegal memory access\s+" + failed.id, table["B"])
    assert re.search(r"\s+running\s+1/2\s+train loss 2, val top-1 5.0%, 200 img/s, on \S+ pid \d+\s+\d+s ago\s+"
                     r"4242 no result yet", table["C"])
    assert re.search(r"\s+interrupted\s+resumes from its checkpoint on the next run\s+\d+s ago", table["D"])
    assert re.search(r"\s+not started\s+" + fresh.id, table["E"])
    assert out.splitlines()[-1] == (f"6 cells in {tmp_path}: 1 done, 1 reused, 1 running, 1 interrupted, 1 failed, "
                                    "1 not started")
    # the lock released: the cell is no longer running but interrupted (its heartbeat stays)
    assert main(["status", "--results-dir", str(tmp_path)]) == 0
    assert re.search(r"depth\s+C\s+0\s+interrupted\s+1/2\s+train loss 2, .*; starts over on the next run",
                     capsys.readouterr().out)


def test_status_without_a_session_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--results-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"vggbench status: error: no session in {tmp_path} (no session.json): "
                                       f"run `pytest ablations --results-dir {tmp_path}` first\n")
    (tmp_path / "selection.json").write_text(json.dumps({"cells": [{"cell_id": "x"}]}))
    with pytest.raises(SystemExit):
        main(["status", "--results-dir", str(tmp_path)])
    assert capsys.readouterr().err == (f"vggbench status: error: {tmp_path / 'selection.json'} is not readable "
                                       "(KeyError): run the session again to rewrite it\n")


def test_a_terminal_gets_one_bar_per_cell_redrawn_in_place():
    out = io.StringIO()
    cell = SimpleNamespace(ablation="depth", test_id="A-s0", id="0" * 16)
    bar = BarDisplay(print, out, columns=100)
    bar.start(cell, Session())
    for k in (1, 2, 1, 2, 3):  # 1, 2, then started over (an out-of-memory retry at half the batch)
        bar.epoch(cell, {**rows(k)[0], "epochs": 3}, cell_eta=4.0, session_done=0, session_eta=4.0)
    bar.finish(cell, {"status": "ok", "result": {"test": {"top1": 12.0}}}, seconds=7.0)
    lines = out.getvalue().split("\n")
    assert len(lines) == 3 and lines[-1] == ""  # two bars (the first closed by the retry), each one line
    frames = lines[1].split("\r")[1:]
    assert [f.split("|")[0] for f in frames] == [f"depth A-s0 {k}/3 " for k in (0, 1, 2, 3, 3)]
    assert frames[2].endswith("| loss 3  val 10.0%  200 img/s  ETA 0:04")  # epoch 2: loss 1 + 2
    assert frames[-1].endswith("| ok, test top-1 12.0% in 0:07") and len(frames[-1]) == 100
