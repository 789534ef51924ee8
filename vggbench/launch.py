"""Scale-out: pytest-xdist workers on one machine, submitit jobs on a cluster.

One machine, many GPUs: `pytest ablations -n auto`
    The controller starts one worker per visible GPU (pytest_xdist_auto_num_workers), or one per
    CPU core without CUDA. Each worker gets its own GPU (CUDA_VISIBLE_DEVICES, set from its worker
    id before CUDA initialises) and an equal share of the CPU cores as torch threads.

A cluster: `pytest ablations --launcher slurm`
    The session's selected cells that have no finished record go out as one Slurm job array
    through submitit. Each array task runs one cell (run.run_cell) and writes its record into
    the shared results folder; the session waits and then reports the records like any run, or
    returns at once with --no-wait (`vggbench collect` aggregates later). A job that is pre-empted
    or reaches its time limit gets SIGUSR2 from Slurm: submitit calls CellJob.checkpoint and
    requeues it, and the requeued job resumes from the cell's last per-epoch checkpoint.
    `--launcher local` (one process per cell on this machine) and `--launcher debug` (in this
    process) run the same jobs through submitit's local and debug executors.

Fail fast: when the first two cells to finish failed with the same error, the cells still queued
or running are cancelled (and the pytest session stops, see vggbench/plugin.py).
"""
from __future__ import annotations

import dataclasses

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import submitit
import torch
from submitit.core.utils import JobPaths
from submitit.helpers import Checkpointable, DelayedSubmission

from .cells import Cell
from .errors import UsageError
from .options import from_namespace, number, option
from .profiles import PROFILES
from .progress import for_log
from .records import Results
from .run import run_cell
from .statuses import Status

LAUNCHERS = ("inprocess", "local", "debug", "slurm")
FAIL_FAST_AFTER = 2    # the same error in the first N finished cells stops the session
MAX_REQUEUES = 20      # a long cell may be cut into many time-limited Slurm jobs


# ------------------------------------------------------------------------------ one machine (xdist)

def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus(device: str = "auto") -> list[str]:
    """The GPUs cells may use, as CUDA_VISIBLE_DEVICES entries; none unless --device is auto or cuda
    (an explicit cuda:N is left alone)."""
    if device not in ("auto", "cuda"):
        return []
    n = torch.cuda.device_count()
    listed = [s.strip() for s in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
    return (listed or [str(i) for i in range(n)])[:n]


def explicit_gpu(device: str) -> bool:
    """--device cuda:N: every cell runs on that one GPU."""
    return device.startswith("cuda:")


def default_workers(option) -> str | None:
    """The `-n` a session gets from its profile (Profile.workers) where the command line leaves it
    open: pytest-xdist loaded, no -n given (-n 0 keeps one process), and none of --collect-only,
    --pdb or a submitit --launcher, which run no cells here or need one process."""
    profile = PROFILES.get(getattr(option, "profile", None))
    if (profile is None or profile.workers is None or getattr(option, "numprocesses", 0) is not None
            or option.collectonly or getattr(option, "usepdb", False)
            or getattr(option, "launcher", "inprocess") != "inprocess"):
        return None
    return profile.workers


def auto_workers(device: str = "auto") -> int:
    """`-n auto`: one worker per GPU; one for an explicit cuda:N (workers sharing a GPU would time
    each other's work); without CUDA, at most one per CPU core."""
    if explicit_gpu(device):
        return 1
    return len(visible_gpus(device)) or cpu_cores()


def worker_settings(worker_id: str, workers: int, device: str = "auto") -> dict:
    """What the controller hands a worker (xdist workerinput): its GPU and its torch threads."""
    out = {"vggbench_threads": max(1, cpu_cores() // max(1, workers))}
    gpus = visible_gpus(device)
    if gpus:
        out["vggbench_cuda_visible_devices"] = gpus[int(worker_id.removeprefix("gw")) % len(gpus)]
    return out


def apply_worker_settings(workerinput: dict) -> None:
    """In a worker, before anything initialises CUDA."""
    if "vggbench_cuda_visible_devices" in workerinput:
        os.environ["CUDA_VISIBLE_DEVICES"] = workerinput["vggbench_cuda_visible_devices"]
    if "vggbench_threads" in workerinput:
        torch.set_num_threads(workerinput["vggbench_threads"])


# ------------------------------------------------------------------------------ jobs (submitit)

@dataclass(frozen=True)
class LaunchOptions:
    """Where the cells run (see the module doc). Each field is a pytest option (vggbench.options)."""
    launcher: str = option("run cells in this process (default), or as submitit jobs: local (a process per cell), "
                           "debug (submitit in this process), slurm (a job array)", "inprocess", choices=LAUNCHERS,
                           pytest_only=True)
    no_wait: bool = option("with --launcher local|slurm: submit and return; `vggbench collect` aggregates later",
                           False, flag=True, pytest_only=True)
    slurm_partition: str | None = option("Slurm partition", pytest_only=True)
    slurm_gpus_per_task: int = option("GPUs per cell (default 1; 0 for CPU nodes)", 1,
                                      number(int, 0, "GPUs per task must be an integer >= 0"), pytest_only=True)
    slurm_cpus_per_task: int | None = option("CPUs per cell", None, number(int, 1, "CPUs per task must be an integer >= 1"),
                                             pytest_only=True)
    slurm_mem_gb: float | None = option("memory per cell in GB", None,
                                        number(float, 0, "memory must be a number of GB > 0", above=True), pytest_only=True)
    slurm_time: int = option("time limit of one job in minutes (default 240); a cell that needs longer is requeued "
                             "and resumes from its checkpoint", 240,
                             number(int, 1, "time must be an integer number of minutes >= 1"), pytest_only=True)
    slurm_parallelism: int | None = option("at most N cells at once (the array's %%N; processes for --launcher local)",
                                           None, number(int, 1, "parallelism must be an integer >= 1"), pytest_only=True)
    slurm_account: str | None = option("Slurm account", pytest_only=True)
    slurm_qos: str | None = option("Slurm quality of service", pytest_only=True)
    slurm_constraint: str | None = option("Slurm node constraint (e.g. a100)", pytest_only=True)
    slurm_setup: tuple[str, ...] = option("a shell line run before each job (module load ..., source "
                                          "venv/bin/activate); repeatable", (), many=True, pytest_only=True)
    device: str = "auto"  # the run's --device (an Options field), set by the caller

    @classmethod
    def of(cls, namespace) -> "LaunchOptions":
        """The launch options of a parsed command line (pytest's config.option), with its --device."""
        return dataclasses.replace(from_namespace(cls, namespace), device=namespace.device)

    @property
    def wait(self) -> bool:
        return not self.no_wait


def outcome(record: dict) -> dict:
    """What a job reports back: the cell, its status and, for an error record, the error."""
    err = record.get("error")
    return {"cell_id": record["cell_id"], "status": record["status"],
            "error": f"{err['type']}: {err['message']}" if err else None}


class CellJob(Checkpointable):
    """One cell as a submitit job. The cell's own failures come back as error records (run_cell),
    so local, debug and Slurm jobs all end with a record in the shared results folder."""

    def __init__(self, cell_id: str):
        self.cell_id = cell_id

    def __call__(self, cell: Cell, results_dir: str, rerun: bool = False) -> dict:
        if cell.id != self.cell_id:  # e.g. --device auto is a CPU here but was a GPU at submission
            config = cell.config()  # --amp auto: bf16 on this node's CPU, float32 on the submitting one's
            gpu = config.get("gpu")
            raise RuntimeError(f"cell {self.cell_id} is cell {cell.id} on this node (device {cell.device_kind}"
                               + (f", GPU {gpu}" if gpu else "") + f", amp {config['train']['amp']}): give the jobs a "
                               "GPU (--slurm-gpus-per-task) of the model the session saw (--slurm-constraint), or run "
                               "with --device cpu; on CPUs, --amp off or bf16 fixes the dtype")
        return outcome(run_cell(cell, results_dir, rerun=rerun, display=for_log()))  # epochs in the job's log

    def checkpoint(self, cell: Cell, results_dir: str, rerun: bool = False) -> DelayedSubmission:
        """Pre-empted or out of time: requeue. The requeued job resumes from the cell's last
        per-epoch checkpoint, so it must not rerun (a rerun starts from nothing)."""
        return DelayedSubmission(self, cell, results_dir, rerun=False)


def job_folder(results_dir: str | os.PathLike) -> Path:
    """Where submitit keeps each job's pickles, logs and sbatch script: <results>/submitit/<job id>/."""
    return Results(results_dir).jobs


def make_executor(opts: LaunchOptions, results_dir: str | os.PathLike, gpu: str | None = None) -> submitit.Executor:
    folder = job_folder(results_dir)
    if opts.launcher == "debug":
        return submitit.DebugExecutor(folder)
    if opts.launcher == "local":
        ex = submitit.LocalExecutor(folder, max_num_timeout=MAX_REQUEUES)
        env = local_gpu_env(opts.device, gpu)
        ex.update_parameters(timeout_min=opts.slurm_time, **({"setup": [env]} if env else {}))
        return ex
    if opts.launcher != "slurm":
        raise UsageError(f"unknown launcher {opts.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    ex = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=MAX_REQUEUES)
    given = {"partition": opts.slurm_partition, "gpus_per_task": opts.slurm_gpus_per_task or None,
             "cpus_per_task": opts.slurm_cpus_per_task, "account": opts.slurm_account, "qos": opts.slurm_qos,
             "constraint": opts.slurm_constraint, "setup": list(opts.slurm_setup) or None,
             "array_parallelism": opts.slurm_parallelism}
    ex.update_parameters(name="vggbench", timeout_min=opts.slurm_time, mem_gb=opts.slurm_mem_gb, tasks_per_node=1,
                         slurm_signal_delay_s=120, slurm_additional_parameters={"requeue": True},
                         **{f"slurm_{k}": v for k, v in given.items() if v is not None})
    return ex


def local_gpu_env(device: str, gpu: str | None) -> str | None:
    """The shell line that gives a local job its GPUs. submitit's local executor sets
    CUDA_VISIBLE_DEVICES to the GPUs it was given (and to "" for none, hiding every GPU); its
    visible_gpus takes integers only (no GPU UUIDs), and a job with cuda:N needs GPU N under the
    same numbering as here. So the variable is set by a setup line: the job's GPU (an entry of this
    process's CUDA_VISIBLE_DEVICES, or an index), or for an explicit cuda:N (and CPU runs) what this
    process sees. None where the job needs no GPU (the executor's CUDA_VISIBLE_DEVICES="" is right)."""
    if gpu is None and not explicit_gpu(device):
        return None
    if not explicit_gpu(device):
        return f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpu)}"
    here = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "unset CUDA_VISIBLE_DEVICES" if here is None else f"export CUDA_VISIBLE_DEVICES={shlex.quote(here)}"


def next_gpu(gpus: list[str], in_use: list[str | None]) -> str | None:
    """The least busy GPU for the next local job (shared round robin when more jobs run than GPUs:
    a job without one would see none)."""
    return min(gpus, key=lambda g: (in_use.count(g), gpus.index(g))) if gpus else None


@dataclass
class Launched:
    submitted: dict[str, str] = field(default_factory=dict)   # cell id -> job id
    outcomes: dict[str, dict] = field(default_factory=dict)   # cell id -> outcome, in finishing order
    stopped: str | None = None                                # why the rest was cancelled
    scripts: list[str] = field(default_factory=list)          # sbatch scripts written (Slurm)


def fail_fast(errors: list[str | None]) -> str | None:
    """The reason to stop when the first FAIL_FAST_AFTER finished cells failed with one error."""
    first = errors[:FAIL_FAST_AFTER]
    if len(first) == FAIL_FAST_AFTER and first[0] is not None and all(e == first[0] for e in first):
        return (f"the first {FAIL_FAST_AFTER} cells failed with the same error, so the rest would too: "
                f"{first[0]} -- fix it and run again")
    return None


def _finished(job, cell: Cell) -> dict:
    try:
        return job.result()
    except Exception as err:  # the job itself died (killed, out of memory on the node, cancelled)
        last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        return {"cell_id": cell.id, "status": Status.ERROR.value, "error": f"job {job.job_id} failed: {last}",
                "log": str(job.paths.stderr)}


def launch(cells: list[Cell], results_dir: str | os.PathLike, opts: LaunchOptions, rerun: bool = False,
           log: Callable[[str], None] = print, poll_s: float | None = None) -> Launched:
    """Run cells as submitit jobs (see the module doc); returns what was submitted and how it ended."""
    todo = list({c.id: c for c in cells}.values())
    out = Launched()
    if not todo:
        return out
    results_dir = str(results_dir)
    gpus = visible_gpus(opts.device) if opts.launcher == "local" else []
    if not opts.wait:
        parallel = len(todo)
    elif opts.launcher == "local":
        parallel = opts.slurm_parallelism or max(1, len(gpus))  # on CPU one cell at a time: each uses every core
    else:
        parallel = 1 if opts.launcher == "debug" else len(todo)
    poll_s = poll_s if poll_s is not None else {"slurm": 30.0, "local": 0.5}.get(opts.launcher, 0.0)

    running: dict = {}   # job -> (cell, gpu)
    pending = list(todo)
    if opts.launcher == "slurm":  # one array for all: Slurm schedules it (%N with --slurm-parallelism)
        ex = make_executor(opts, results_dir)
        with ex.batch():
            jobs = [ex.submit(CellJob(c.id), c, results_dir, rerun) for c in todo]
        for job, c in zip(jobs, todo):
            running[job] = (c, None)
            out.submitted[c.id] = job.job_id
        array_id = jobs[0].job_id.split("_")[0]
        out.scripts = [str(JobPaths(job_folder(results_dir), job_id=array_id).submission_file)]
        log(f"submitted {len(jobs)} cells as Slurm job array {array_id} "
            f"(sbatch script {out.scripts[0]}, logs {Results(results_dir).jobs.parent})")
        pending = []
    while pending or running:
        while pending and len(running) < parallel:
            c = pending.pop(0)
            gpu = next_gpu(gpus, [g for _, g in running.values()])
            job = make_executor(opts, results_dir, gpu).submit(CellJob(c.id), c, results_dir, rerun)
            running[job] = (c, gpu)
            out.submitted[c.id] = job.job_id
            log(f"{c.ablation} {c.test_id}: job {job.job_id} ({opts.launcher})")
        if not opts.wait:
            break
        done = [j for j in running if j.done()]
        for job in done:
            c, _ = running.pop(job)
            res = out.outcomes[c.id] = _finished(job, c)
            log(f"[{len(out.outcomes)}/{len(todo)}] {c.ablation} {c.test_id}: {res['status']}"
                + (f" ({res['error']})" if res.get("error") else ""))
            reason = fail_fast([o.get("error") for o in out.outcomes.values()])
            if reason and out.stopped is None:
                out.stopped = reason
                for j in running:
                    j.cancel(check=False)
                running.clear()
                pending.clear()
                log(f"stopping: {reason}")
                break
        if running and not done:
            time.sleep(poll_s)
    if not opts.wait:
        log(f"submitted {len(out.submitted)} cells; when they are done: "
            f"vggbench collect --results-dir {results_dir}")
    _remove_template_folder(results_dir)
    return out


def _remove_template_folder(results_dir: str | os.PathLike) -> None:
    """submitit's executors make the folder template itself, literally <results>/submitit/%j/, and
    leave it empty: removed (a folder with files in it is left alone)."""
    try:
        job_folder(results_dir).rmdir()
    except OSError:  # not there, or not empty
        pass
