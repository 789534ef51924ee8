"""Scale-out and failures: pytest-xdist workers (a GPU each, shared CPU threads), submitit launchers
(local processes, debug, the Slurm submission), concurrent writers, out-of-memory retries, error
records and fail fast. Injected faults use the test hook VGGBENCH_INJECT (see vggbench.faults)."""
import json
import multiprocessing
import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from helpers import FAST, ROOT
from vggbench import records, tables
from vggbench.cells import cells_for
from vggbench.options import Options
from vggbench.run import problems, run_cell
from vggbench.cli import main
from vggbench.grid import ABLATIONS

FAST_OPTS = Options(epochs=1, train_subset=160, test_subset=100)
COLS = ["case", "seed", "status", "params", "gmacs", "gflops", "epochs_run", "best_val_top1", "test_top1",
        "test_top5", "test_loss", "cell_id"]
KERNEL_B = ["-k", "kernel and B-", *FAST]  # two cells: B-3x3, B-large ("B" alone matches "ablations")


@pytest.fixture(scope="module")
def inprocess_kernel_b(tmp_path_factory, ablations):
    results = tmp_path_factory.mktemp("inprocess")
    done = ablations(*KERNEL_B, results=results)
    assert done.returncode == 0, done.stdout + done.stderr
    return pd.read_csv(results / "kernel.csv")


# ------------------------------------------------------------------------------ xdist

FAKE_GPUS = '''
import json, os, pytest, torch
if "PYTEST_XDIST_WORKER" not in os.environ:   # the controller sees three GPUs
    torch.cuda.device_count = lambda: 3

def pytest_sessionstart(session):
    wi = getattr(session.config, "workerinput", None)
    if wi is not None:
        out = os.path.join(os.environ["WORKERS_OUT"], wi["workerid"] + ".json")
        with open(out, "w") as f:
            json.dump({"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "threads": torch.get_num_threads(), "cuda_initialized": torch.cuda.is_initialized()}, f)
'''


def test_xdist_auto_gives_each_worker_its_own_gpu(tmp_path, ablations):
    (tmp_path / "fake_gpus.py").write_text(FAKE_GPUS)
    out = tmp_path / "workers"
    out.mkdir()
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WORKERS_OUT": str(out),
           "CUDA_VISIBLE_DEVICES": "5,7,9"}
    # workers start and collect, select nothing (xdist starts no workers under --collect-only)
    done = ablations("-p", "fake_gpus", "-n", "auto", "-k", "no_such_case", results=tmp_path / "r", env=env)
    assert done.returncode == 5, done.stdout + done.stderr
    seen = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    assert sorted(seen) == ["gw0", "gw1", "gw2"]  # -n auto: one worker per GPU
    assert [seen[w]["cuda_visible_devices"] for w in sorted(seen)] == ["5", "7", "9"]
    assert all(w["threads"] == 1 and not w["cuda_initialized"] for w in seen.values())  # 2 cores / 3 workers


@pytest.mark.parametrize("cores,workers,threads", [(6, 2, 3), (2, 2, 1), (2, 3, 1), (5, 2, 2)])
def test_xdist_auto_on_cpu_uses_the_cores(monkeypatch, cores, workers, threads):
    from vggbench import launch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(10, 10 + cores)), raising=False)
    assert launch.auto_workers("cpu") == cores  # -n auto without CUDA: a worker per core this process may use
    assert launch.worker_settings("gw1", workers, "cpu") == {"vggbench_threads": threads}  # never 0 threads


WORKER_PROBE = '''
import json, os
def pytest_sessionstart(session):
    wi = getattr(session.config, "workerinput", None)
    name = wi["workerid"] if wi is not None else "controller"
    with open(os.path.join(os.environ["WORKERS_OUT"], name + ".json"), "w") as f:
        json.dump({"numprocesses": session.config.option.numprocesses}, f)
'''


def test_the_cpu_profile_runs_a_cell_per_core_without_being_asked(tmp_path, ablations):
    """`pytest ablations --profile cpu` with no -n: xdist workers, one per core (Profile.workers), each
    an ordinary worker (one that started workers of its own would hang here); -n 0 keeps one process."""
    (tmp_path / "worker_probe.py").write_text(WORKER_PROBE)
    from vggbench.launch import cpu_cores

    cores = cpu_cores()  # what -n auto gives without CUDA
    for extra, expected in (((), ["controller", *[f"gw{i}" for i in range(cores)]]), (("-n", "0"), ["controller"])):
        out = tmp_path / f"workers{len(extra)}"
        out.mkdir()
        env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WORKERS_OUT": str(out)}
        done = ablations("-p", "worker_probe", "--profile", "cpu", "--dataset", "synthetic", "-k", "no_such_case",
                         *extra, results=tmp_path / "r", env=env, timeout=120)
        assert done.returncode == 5, done.stdout + done.stderr  # nothing selected, no hang
        assert sorted(p.stem for p in out.iterdir()) == expected
        assert {json.loads(p.read_text())["numprocesses"] for p in out.iterdir() if p.stem != "controller"} <= {None}


@pytest.mark.parametrize("given,expected", [
    ({}, "auto"),                                   # cpu profile, no -n: a worker per core
    ({"numprocesses": 0}, None), ({"numprocesses": 3}, None),   # the command line chose
    ({"profile": "smoke"}, None),                   # a profile that does not ask
    ({"collectonly": True}, None), ({"usepdb": True}, None), ({"launcher": "slurm"}, None),
])
def test_a_profile_asks_for_workers_only_where_the_command_line_leaves_it_open(given, expected):
    from argparse import Namespace
    from vggbench import launch

    option = Namespace(**{"profile": "cpu", "numprocesses": None, "collectonly": False, "usepdb": False,
                          "launcher": "inprocess", **given})
    assert launch.default_workers(option) == expected
    del option.numprocesses  # -p no:xdist: no -n option at all
    assert launch.default_workers(option) is None


def needed(cell) -> dict:
    """A cell and the cells it needs (Cell.needs), by id."""
    out = {cell.id: cell}
    for need in cell.needs():
        out.update(needed(need))
    return out


@pytest.mark.slow
def test_xdist_smoke_every_record_present_and_valid(tmp_path, ablations):
    done = ablations("-n", "2", *FAST, results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # every ablation runs but transfer, which is skipped without --pretrained
    runs = [a for a in ABLATIONS.values() if not a.pretrained]
    assert f"{sum(len(a.cases) for a in runs)} passed" in done.stdout
    cells = {}
    for c in (c for a in runs for c in cells_for(a, FAST_OPTS)):
        cells.update(needed(c))
    files = sorted(records.runs_dir(tmp_path).glob("*.json"))
    assert sorted(f.stem for f in files) == sorted(cells)  # every cell, and every cell one needs, each once
    for f in files:
        rec = records.read_record(f)
        assert rec is not None and problems(rec) == [], f
        assert rec["device"].endswith("x1 threads")  # 2 cores shared by 2 workers
    assert not [p for p in records.runs_dir(tmp_path).iterdir() if p.suffix in (".tmp", ".ckpt", ".corrupt")]
    for a in runs:
        assert len(pd.read_csv(tmp_path / f"{a.name}.csv")) == len(a.cases)


# ------------------------------------------------------------------------------ concurrency

def _writer(results, name, n, barrier):
    barrier.wait()
    for i in range(n):
        records.write_record(records.record_path(results, f"{name}-{i:04d}"), {"writer": name, "i": i, "pad": "x" * i})
        records.write_record(records.record_path(results, "shared"), {"writer": name, "i": i})


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, n = ctx.Barrier(3), 300
    procs = [ctx.Process(target=_writer, args=(tmp_path, name, n, barrier)) for name in ("a", "b")]
    for p in procs:
        p.start()
    barrier.wait()
    reads = 0
    while any(p.is_alive() for p in procs):  # read while they write: never a torn record
        for f in records.runs_dir(tmp_path).glob("*.json"):
            assert records.read_record(f, check=False) is not None, f
            reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    names = sorted(f.stem for f in records.runs_dir(tmp_path).glob("*.json"))
    assert names == sorted([f"{w}-{i:04d}" for w in "ab" for i in range(n)] + ["shared"])
    assert all(records.read_record(records.record_path(tmp_path, s), check=False)["i"] == int(s[2:]) for s in names if s != "shared")
    assert records.read_record(records.record_path(tmp_path, "shared"), check=False)["i"] == n - 1
    assert sorted(p.name for p in records.runs_dir(tmp_path).iterdir()) == [f"{s}.json" for s in names]
    assert reads > 0


def _run_cell(results, queue):
    cell = next(c for c in cells_for("depth", FAST_OPTS) if c.case == "A")
    queue.put(run_cell(cell, results)["reused"])


@pytest.mark.slow
def test_two_workers_asking_for_one_cell_compute_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_run_cell, args=(tmp_path, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sorted([queue.get(), queue.get()]) == [False, True]  # one computed it, the other reused it
    assert len(list(records.runs_dir(tmp_path).glob("*.json"))) == 1


def test_aggregation_ignores_half_written_temporary_files(tmp_path):
    a, b = cells_for("kernel", FAST_OPTS)[:2]
    rec = {"cell_id": a.id, "config": a.config(), "status": "ok", "result": {"test": {"top1": 50.0}}}
    records.write_record(records.record_path(tmp_path, a.id), rec)
    half = {a.id: '{"cell_id": "', b.id: '{"status": "ok", "config": {"mo'}
    for cid, text in half.items():  # a writer at work (or killed) on both cells
        (records.runs_dir(tmp_path) / f".{cid}.json.w0rk1n.tmp").write_text(text)
    got = tables.aggregate(tmp_path, ["kernel"], FAST_OPTS)
    assert got["kernel"]["cell_id"].tolist() == [a.id]
    assert pd.read_csv(tmp_path / "kernel.csv")["test_top1"].tolist() == [50.0]
    assert sorted(p.name for p in records.runs_dir(tmp_path).iterdir()) == sorted(
        [f"{a.id}.json"] + [f".{cid}.json.w0rk1n.tmp" for cid in half])  # nothing set aside, nothing lost


# ------------------------------------------------------------------------------ launchers

@pytest.mark.slow
def test_local_launcher_runs_cells_as_processes_and_matches_inprocess(tmp_path, inprocess_kernel_b, ablations):
    done = ablations(*KERNEL_B, "--launcher", "local", results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "kernel.csv")[COLS], inprocess_kernel_b[COLS])
    # two jobs, each its own process (a local job's id is its pid); not submitit's empty template folder %j/
    jobs = sorted(p.name for p in (tmp_path / "submitit").iterdir())
    assert len(jobs) == 2 and all(j.isdigit() for j in jobs) and str(os.getpid()) not in jobs
    for j in jobs:
        assert (tmp_path / "submitit" / j / f"{j}_0_result.pkl").exists()
        assert f"job {j} (local)" in done.stdout


@pytest.mark.slow
def test_debug_launcher_matches_inprocess(tmp_path, inprocess_kernel_b, ablations):
    done = ablations(*KERNEL_B, "--launcher", "debug", results=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "kernel.csv")[COLS], inprocess_kernel_b[COLS])


FAKE_SLURM = {  # just enough of Slurm for submitit to submit: sbatch answers with a job id
    "srun": "#!/bin/sh\nexec \"$@\"\n",
    "sbatch": "#!/bin/sh\necho \"Submitted batch job 4242\"\n",
    "scontrol": "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/scontrol.log\"\n",
}


@pytest.mark.slow
def test_slurm_array_submission_then_tasks_then_collect(tmp_path, inprocess_kernel_b, ablations):
    """The Slurm path as far as a machine without Slurm allows: submitit writes the sbatch script of
    a 2-cell job array (sbatch is a stub that answers with a job id); the session returns (--no-wait);
    the two array tasks then run the script's command in Slurm's environment, as the nodes would;
    `vggbench collect` aggregates; the table equals the in-process one."""
    bin_dir, results = tmp_path / "bin", tmp_path / "results"
    bin_dir.mkdir()
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = ablations(*KERNEL_B, "--launcher", "slurm", "--no-wait", "--slurm-partition", "gpu", "--slurm-gpus-per-task", "1",
               "--slurm-cpus-per-task", "8", "--slurm-mem-gb", "32", "--slurm-time", "90", "--slurm-parallelism", "2",
               "--slurm-account", "vision", "--slurm-setup", "module load cuda/12.4", results=results, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 skipped" in done.stdout and "submitted 2 cells as Slurm job array 4242" in done.stdout
    script = (results / "submitit" / "4242" / "4242_submission.sh").read_text()
    print(script)  # shown with -s: the submission, as sbatch would get it
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=90", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --account=vision", "#SBATCH --job-name=vggbench", "#SBATCH --signal=USR2@120",
                 "#SBATCH --requeue", "#SBATCH --output=", "module load cuda/12.4", "export SUBMITIT_EXECUTOR=slurm"):
        assert line in script, line
    command = next(line for line in script.splitlines() if line.startswith("srun "))
    words = shlex.split(command)
    python_part = words[words.index(sys.executable):]
    assert python_part[1:4] == ["-u", "-m", "submitit.core._submit"]

    for task in (0, 1):  # what Slurm runs on the nodes: one array task per cell
        slurm_env = {**os.environ, **env, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": str(4243 + task),
                     "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": str(task), "SLURM_PROCID": "0",
                     "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
                     "SLURM_JOB_NODELIST": "node1"}
        ran = subprocess.run(python_part, cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert (results / "submitit" / f"4242_{task}" / f"4242_{task}_0_result.pkl").exists()

    assert main(["collect", "--results-dir", str(results)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(results / "kernel.csv")[COLS], inprocess_kernel_b[COLS])


def test_cell_job_requeues_without_rerun():
    """On pre-emption submitit calls checkpoint(): the requeued job must resume (rerun=False)."""
    from vggbench.launch import CellJob

    cell = cells_for("kernel", FAST_OPTS)[0]
    delayed = CellJob(cell.id).checkpoint(cell, "results", rerun=True)
    assert delayed.args == (cell, "results") and delayed.kwargs == {"rerun": False}
    with pytest.raises(RuntimeError, match="--device cpu"):
        CellJob("0" * 16)(cell, "results")  # a cell that resolves differently on the node


# ------------------------------------------------------------------------------ failures

def test_out_of_memory_retries_at_half_the_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGBENCH_INJECT", "oom>16")  # batches above 16 "do not fit"
    cell = next(c for c in cells_for("depth", FAST_OPTS) if c.case == "A")
    assert cell.train.batch_size == 64
    rec = run_cell(cell, tmp_path)
    assert rec["status"] == "unjudged" and problems(rec) == []  # one epoch: too few to judge learning
    assert [r["batch_size"] for r in rec["oom_retries"]] == [64, 32]
    assert all("out of memory" in r["error"] for r in rec["oom_retries"])
    assert rec["train_batch_size"] == 16 and rec["config"]["train"]["batch_size"] == 64  # same cell, same id
    assert not list(records.runs_dir(tmp_path).glob("*.ckpt"))


@pytest.mark.slow
def test_an_error_in_one_cell_leaves_the_others_done_and_is_not_reused(tmp_path, ablations):
    done = ablations("-k", "optimizer", *FAST, results=tmp_path, env={"VGGBENCH_INJECT": "error=D-adam"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout
    assert "the cell raised RuntimeError: injected failure (VGGBENCH_INJECT)" in done.stdout
    assert "cell traceback" in done.stdout and "Traceback (most recent call last)" in done.stdout
    table = pd.read_csv(tmp_path / "optimizer.csv").set_index("case")
    assert table.loc["D-adam", "status"] == "error" and set(table.drop("D-adam").status) == {"unjudged"}
    err = records.read_record(records.record_path(tmp_path, table.loc["D-adam", "cell_id"]))
    assert err["status"] == "error" and "injected failure" in err["error"]["traceback"]
    stamps = {f.name: f.stat().st_mtime_ns for f in records.runs_dir(tmp_path).glob("*.json")}

    again = ablations("-k", "optimizer", *FAST, results=tmp_path)  # fixed: only the failed cell runs again
    assert again.returncode == 0 and "3 passed" in again.stdout, again.stdout + again.stderr
    after = {f.name: f.stat().st_mtime_ns for f in records.runs_dir(tmp_path).glob("*.json")}
    assert [n for n in after if after[n] != stamps[n]] == [f"{table.loc['D-adam', 'cell_id']}.json"]
    assert set(pd.read_csv(tmp_path / "optimizer.csv").status) == {"unjudged"}


@pytest.mark.parametrize("launcher", ["inprocess", "debug"])
def test_the_same_error_in_every_cell_stops_after_two(tmp_path, launcher, ablations):
    done = ablations("-k", "depth", *FAST, "--launcher", launcher, results=tmp_path, env={"VGGBENCH_INJECT": "error"})
    assert done.returncode == 2, done.stdout + done.stderr  # interrupted
    assert "2 failed" in done.stdout and "passed" not in done.stdout
    assert ("Interrupted: the first 2 cells failed with the same error, so the rest would too: "
            "RuntimeError: injected failure (VGGBENCH_INJECT) -- fix it and run again") in done.stdout
    assert len(list(records.runs_dir(tmp_path).glob("*.json"))) == 2


def test_fail_fast_under_xdist(tmp_path, ablations):
    done = ablations("-n", "2", "-k", "depth or batchnorm", *FAST, results=tmp_path, env={"VGGBENCH_INJECT": "error"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Interrupted: the first 2 cells failed with the same error" in done.stdout
    assert "passed" not in done.stdout
