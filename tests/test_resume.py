"""Resume inside a cell, for real: a training cell killed (SIGKILL) in the middle of an epoch, or
pre-empted as a submitit job (SIGUSR2, as Slurm does), continues from its last per-epoch
checkpoint and ends with the same record as an uninterrupted run, leaving no partial file.

The pause in the middle of an epoch is the test hook VGGBENCH_INJECT=pause=STEP:FILE (vggbench/faults.py):
the cell writes its process id to FILE before training step STEP and sleeps; the test then kills
or signals that process.
"""
import os
import signal
import time

import pytest
import torch

from helpers import scalars
from vggbench import records
from vggbench.checkpoint import Checkpoint
from vggbench.curves import curves_dir

# Cell A-bn of the batchnorm ablation at an LR where it learns (status ok, all 3 epochs): 160 images
# at batch 32 are 5 steps an epoch, so training step 8 is the third step of epoch 2 (the last
# checkpoint is epoch 1's). In bf16 autocast on every machine (auto's choice where the CPU has bf16
# units; tests/test_trainer.py resumes in both dtypes in-process).
ARGS = ["-k", "batchnorm and A-bn", "--lr", "0.005", "--epochs", "3", "--batch-size", "32",
        "--train-subset", "160", "--test-subset", "100", "--amp", "bf16"]
PAUSE_STEP = 8
# What must be equal; wall time (also per epoch), throughput, created, versions and device may differ.
SAME = ("cell_id", "config", "status", "lr", "result", "params", "trainable_params", "gmacs", "gflops",
        "analytic_gmacs", "fvcore_total_gmacs", "train_batch_size", "oom_retries", "ablation", "case")


def only_record(results) -> dict:
    files = list(records.runs_dir(results).glob("*.json"))
    assert len(files) == 1, files
    return records.read_record(files[0])


def wait_for(path, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the cell ended before it paused:\n{proc.communicate()[0]}")
        assert time.monotonic() < deadline, f"no pause within {timeout} s"
        time.sleep(0.2)


def untimed(record: dict) -> dict:
    """The record's SAME fields with each epoch's wall time (history epoch_s) left out."""
    out = {k: record[k] for k in SAME}
    out["result"] = {**out["result"], "history": [{k: v for k, v in h.items() if k != "epoch_s"}
                                                  for h in out["result"]["history"]]}
    return out


def assert_same_result(a: dict, b: dict, results_a, results_b):
    assert untimed(a) == untimed(b)
    assert a["result"]["epochs_run"] == 3 and a["status"] == "ok"
    wa = torch.load(records.weights_path(results_a, a["cell_id"]))
    wb = torch.load(records.weights_path(results_b, b["cell_id"]))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # bit-identical weights


def assert_no_partial_file(results, cell_id):
    assert sorted(p.name for p in records.runs_dir(results).iterdir()) == [f"{cell_id}.json"]
    assert [p.name for p in (results / ".locks").iterdir()] == [f"{cell_id}.lock"]  # locks out of runs/
    assert [p.name for p in (results / "weights").iterdir()] == [f"{cell_id}.pt"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ablations):
    results = tmp_path_factory.mktemp("uninterrupted")
    run = ablations(*ARGS, results=results)
    assert run.returncode == 0, run.stdout + run.stderr
    return results, only_record(results)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_restart_equals_uninterrupted(tmp_path, uninterrupted, ablations):
    results, marker = tmp_path / "results", tmp_path / "paused"
    proc = ablations(*ARGS, results=results, env={"VGGBENCH_INJECT": f"pause={PAUSE_STEP}:{marker}"},
                     background=True)
    try:
        wait_for(marker, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    runs = records.runs_dir(results)
    assert not list(runs.glob("*.json"))  # killed before it had a record
    (ckpt,) = runs.glob("*.ckpt")
    assert [h["epoch"] for h in Checkpoint(ckpt).load()["history"]] == [1]  # killed in epoch 2
    # What a writer killed between its temporary file and the rename leaves behind:
    (runs / f".{ckpt.stem}.json.cut0ff.tmp").write_text('{"status": "o')

    again = ablations(*ARGS, results=results)  # no injection: runs to the end
    assert again.returncode == 0, again.stdout + again.stderr
    rec = only_record(results)
    assert [line for line in again.stdout.splitlines() if line.startswith("vggbench: resuming")] == [
        f"vggbench: resuming {rec['cell_id']} from epoch 1 ({rec['cell_id']}.ckpt, attempt 2)"]
    prov = records.provenance(rec)
    assert (prov["resumed"], prov["resumed_from_epoch"], prov["attempts"]) == (True, 1, 2)
    assert prov["wall_s_total"] > rec["wall_s"]  # the killed attempt's time up to its checkpoint counts
    ref_results, ref = uninterrupted
    assert_same_result(rec, ref, results, ref_results)
    assert_no_partial_file(results, rec["cell_id"])
    # TensorBoard: the killed run's epoch 1, then the resumed run's 2 and 3: the uninterrupted curves
    resumed, whole = (scalars(curves_dir(r, "batchnorm", "A-bn", 0)) for r in (results, ref_results))
    for tag in ("Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val", "LR"):
        assert [step for step, _ in resumed[tag]] == [1, 2, 3], tag
        assert resumed[tag] == whole[tag], tag


@pytest.mark.slow
def test_preempted_local_job_requeues_and_resumes(tmp_path, uninterrupted, ablations):
    """--launcher local: SIGUSR2 to the job mid-epoch is what Slurm sends before pre-emption or the
    time limit; submitit calls CellJob.checkpoint, requeues, and the job resumes from epoch 1."""
    results, marker = tmp_path / "results", tmp_path / "paused"
    proc = ablations(*ARGS, "--launcher", "local", results=results,
                     env={"VGGBENCH_INJECT": f"pause={PAUSE_STEP}:{marker}"}, background=True)
    try:
        wait_for(marker, proc)
        job_pid = int(marker.read_text())
        assert job_pid != proc.pid  # the cell runs in a job process, not in the pytest session
        os.kill(job_pid, signal.SIGUSR2)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    rec = only_record(results)
    (log,) = (results / "submitit").glob("*/*_0_log.out")
    text = log.read_text()
    assert text.count("Starting with JobEnvironment") == 2  # started, requeued, started again
    assert "Requeued job" in log.with_suffix(".err").read_text() + text
    assert f"vggbench: resuming {rec['cell_id']} from epoch 1" in log.with_suffix(".err").read_text()
    assert records.provenance(rec)["attempts"] == 2
    ref_results, ref = uninterrupted
    assert_same_result(rec, ref, results, ref_results)
    assert_no_partial_file(results, rec["cell_id"])
