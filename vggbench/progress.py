"""Live progress of cells while they train: a bar on a terminal, one line per epoch in logs.

run.run_cell tells a `Watch` what its cell does (reused, started, each epoch, finished); the watch
keeps the cell's TensorBoard curves (curves.py) and its heartbeat (<results>/progress/<cell>.json,
rewritten after each epoch, read by `vggbench status`), and shows it on a `Display`:

  LineDisplay  one line per epoch (CI logs, Slurm job logs, pytest-xdist workers, --progress lines):
      vggbench depth A-s0: epoch 2/2  train loss 2.111  val top-1 30.6%  1835 img/s  cell ETA 0:00  session 0/6 done, ETA 0:47
      (a line of `pytest ablations -k depth` on the smoke profile)
  BarDisplay   a tqdm bar per cell that redraws in place (a terminal), left on screen when the cell ends.

Everything comes from the trainer's per-epoch row (values already on the host after the epoch's one
sync); nothing here synchronises a device.

Under pytest (`for_pytest`) output capture stays on for the cells: each write suspends it
(capturemanager.global_and_fixture_disabled, as pytest's own live logging does) and goes through
the terminal reporter. An xdist worker's terminal reporter writes into the channel to the
controller, which does not print it, but a worker's stderr is the controller's: workers write
their lines there, each prefixed with the worker's id.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .curves import Curves
from .records import Results, atomic_write, record_path
from .statuses import Status


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def outcome(record: dict) -> str:
    """A record in a few words: "ok, test top-1 31.1%", or an error's type and first line."""
    if record.get("status") == Status.ERROR:
        err = record.get("error", {})
        return (f"{err.get('type')}: {err.get('message', '')}".strip().splitlines() or [""])[0]
    top1 = record.get("result", {}).get("test", {}).get("top1")
    return record.get("status", "?") + (f", test top-1 {top1:.1f}%" if isinstance(top1, (int, float)) else "")


def heartbeat_path(results_dir: str | os.PathLike, cell_id: str) -> Path:
    return Results(results_dir).heartbeat(cell_id)


def write_heartbeat(results_dir: str | os.PathLike, cell, row: dict) -> None:
    """After each epoch of a running cell: where it is, for `vggbench status`."""
    keep = ("epoch", "epochs", "train_loss", "val_top1")
    beat = {k: row[k] for k in keep if k in row}
    if row.get("train_s"):
        beat["images_per_s"] = row["images"] / row["train_s"]
    beat.update(updated=now(), host=os.uname().nodename, pid=os.getpid())
    atomic_write(heartbeat_path(results_dir, cell.id), json.dumps(beat) + "\n")


def remove_heartbeat(results_dir: str | os.PathLike, cell_id: str) -> None:
    heartbeat_path(results_dir, cell_id).unlink(missing_ok=True)


class Session:
    """Counts for the session ETA: the cells to run and how long this process's computed cells took.
    Cells finished by anyone (another xdist worker, a job) are seen by their records."""

    def __init__(self, cells=(), results_dir=None, workers: int = 1):
        self.cells = list({c.id: c for c in cells}.values())
        self.results_dir = results_dir
        self.workers = max(1, workers)
        self.seconds: list[float] = []   # wall time of each cell computed by this process

    def done(self) -> int:
        if self.results_dir is None:
            return 0
        return sum(record_path(self.results_dir, c.id).exists() for c in self.cells)

    def eta(self, cell_eta: float, cell_total: float) -> tuple[int, float]:
        """(cells done, seconds left): this cell's rest, then the cells not started, shared by the
        workers, at the mean time of the cells computed so far (this one's estimate before any)."""
        done = self.done()
        waiting = max(0, len(self.cells) - done - self.workers)
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else cell_total
        return done, cell_eta + waiting * mean / self.workers


class Display:
    """Where progress goes; the base shows nothing."""

    def reused(self, cell, record: dict) -> None: ...
    def start(self, cell, session: Session) -> None: ...
    def epoch(self, cell, row: dict, cell_eta: float, session_done: int, session_eta: float) -> None: ...
    def finish(self, cell, record: dict, seconds: float) -> None: ...

    def said(self, text: str) -> bool:
        """Show a notice (notices.py) when it happens; False if this display cannot (then the
        session summary shows it)."""
        return False


def _name(cell) -> str:
    return f"{cell.ablation} {cell.test_id}"


def epoch_text(row: dict) -> str:
    parts = [f"train loss {row['train_loss']:.4g}"]
    if "val_top1" in row:
        parts.append(f"val top-1 {row['val_top1']:.1f}%")
    if row.get("train_s"):
        parts.append(f"{row['images'] / row['train_s']:.0f} img/s")
    return "  ".join(parts)


def outcome_text(record: dict) -> str:
    return ("error: " if record.get("status") == Status.ERROR else "") + outcome(record)


class LineDisplay(Display):
    """end_cell: called after a cell's last line (pytest: the test file's prefix for its dot)."""

    def __init__(self, write: Callable[[str], None], prefix: str = "vggbench ",
                 end_cell: Callable[[], None] | None = None):
        self.write, self.prefix, self.end_cell = write, prefix, end_cell or (lambda: None)
        self.total = 0

    def reused(self, cell, record):
        self.write(f"{self.prefix}{_name(cell)}: reused ({outcome_text(record)})")
        self.end_cell()

    def start(self, cell, session):
        self.total = len(session.cells)

    def epoch(self, cell, row, cell_eta, session_done, session_eta):
        session = f"  session {session_done}/{self.total} done, ETA {clock(session_eta)}" if self.total else ""
        self.write(f"{self.prefix}{_name(cell)}: epoch {row['epoch']}/{row['epochs']}  {epoch_text(row)}  "
                   f"cell ETA {clock(cell_eta)}{session}")

    def finish(self, cell, record, seconds):
        self.write(f"{self.prefix}{_name(cell)}: {outcome_text(record)} in {clock(seconds)}")
        self.end_cell()

    def said(self, text):
        try:
            self.write(f"{self.prefix.rstrip()}: {text}")
        except OSError:  # a display that cannot write: the summary says it
            return False
        return True


class BarDisplay(LineDisplay):
    """A tqdm bar per cell written to `file` (an object with write/flush), `columns` wide (a number,
    or a function that measures the terminal when a bar starts)."""

    def __init__(self, write: Callable[[str], None], file, columns: int | Callable[[], int],
                 end_cell: Callable[[], None] | None = None):
        super().__init__(write, end_cell=end_cell)
        self.file, self.columns, self.bar = file, columns, None

    def start(self, cell, session):
        super().start(cell, session)
        self.bar = None  # made at the first epoch: a resumed cell starts its bar there

    def epoch(self, cell, row, cell_eta, session_done, session_eta):
        from tqdm import tqdm

        # shorter than a line: the bar shares the terminal's width with it
        text = epoch_text(row).replace("train loss", "loss").replace("val top-1", "val") + f"  ETA {clock(cell_eta)}"
        if self.total:
            text += f" (session {session_done}/{self.total} done, {clock(session_eta)})"
        if self.bar is not None and row["epoch"] <= self.bar.n:  # started over (an out-of-memory retry)
            self.bar.close()
            self.bar = None
        if self.bar is None:
            self.bar = tqdm(total=row["epochs"], initial=row["epoch"] - 1, desc=_name(cell), unit="epoch",
                            file=self.file, ncols=self.columns() if callable(self.columns) else self.columns,
                            mininterval=0, miniters=1,
                            bar_format=self._format(text))
        self.bar.bar_format = self._format(text)
        self.bar.update(1)

    def said(self, text):
        return self.bar is None and super().said(text)  # never through a bar being drawn

    @staticmethod
    def _format(text: str) -> str:
        return "{desc} {n_fmt}/{total_fmt} |{bar}| " + text.replace("{", "{{").replace("}", "}}")

    def finish(self, cell, record, seconds):
        if self.bar is not None:
            self.bar.bar_format = self._format(f"{outcome_text(record)} in {clock(seconds)}")
            self.bar.close()
            self.bar = None
            self.end_cell()
        else:
            super().finish(cell, record, seconds)


class Watch:
    """What run_cell reports about one cell: shown on the display, kept as curves and heartbeat."""

    def __init__(self, cell, results_dir, display: Display | None = None, session: Session | None = None):
        self.cell, self.results_dir = cell, results_dir
        self.display = display or Display()
        self.session = session or Session(results_dir=results_dir)
        self.curves = Curves(results_dir, cell)
        self.t0 = time.perf_counter()
        self.epoch_seconds: list[float] = []

    def _show(self, what: str, *args) -> None:
        """A display that cannot write (a closed pipe, a gone terminal) is dropped, not the cell."""
        try:
            getattr(self.display, what)(self.cell, *args)
        except OSError:
            self.display = Display()

    def reused(self, record: dict) -> None:
        self._show("reused", record)

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.epoch_seconds.clear()
        self._show("start", self.session)

    def epoch(self, row: dict) -> None:
        self.curves.epoch(row)
        write_heartbeat(self.results_dir, self.cell, row)
        self.epoch_seconds.append(row["epoch_s"])
        cell_eta = (row["epochs"] - row["epoch"]) * sum(self.epoch_seconds) / len(self.epoch_seconds)
        done, session_eta = self.session.eta(cell_eta, time.perf_counter() - self.t0 + cell_eta)
        self._show("epoch", row, cell_eta, done, session_eta)

    def finish(self, record: dict) -> None:
        seconds = time.perf_counter() - self.t0
        self.curves.finish(record)
        remove_heartbeat(self.results_dir, self.cell.id)
        self.session.seconds.append(seconds)
        self._show("finish", record, seconds)

    def abort(self) -> None:
        """The cell was interrupted (killed, requeued): close the curves; the heartbeat stays."""
        self.curves.close()


# ------------------------------------------------------------------------------ where it is shown

def for_log(stream=None) -> Display:
    """One line per epoch to a stream (default stdout, e.g. a submitit job's log), flushed."""
    def write(line: str) -> None:
        out = stream or sys.stdout
        out.write(line + "\n")
        out.flush()
    return LineDisplay(write)


class _Live:
    """Writes that reach the terminal during a test: capture suspended around each one. Our text
    goes on lines of its own below the test file's line of dots, as pytest's live logging does.
    Unless pytest is quiet (-q: bare dots) a line is left open: pytest's next result starts with a
    newline, which would otherwise leave an empty line."""

    def __init__(self, config):
        self.capman = config.pluginmanager.getplugin("capturemanager")
        self.tr = config.pluginmanager.getplugin("terminalreporter")
        self.tw = config.get_terminal_writer()
        self.leave_open = self.tr.verbosity >= 0

    def begin(self) -> None:
        with self.capman.global_and_fixture_disabled():
            if self.tr.currentfspath:  # after pytest's line of dots: pytest starts a new one after us
                self.tr.ensure_newline()
            elif self.tw.width_of_current_line:
                self.tr.line("")

    def write(self, text: str) -> None:
        with self.capman.global_and_fixture_disabled():
            self.tr.write(text, flush=True)

    def columns(self) -> int:
        with self.capman.global_and_fixture_disabled():  # captured, stdout is a file: no width
            return shutil.get_terminal_size().columns

    def line(self, text: str) -> None:
        self.begin()
        self.write(text if self.leave_open else text + "\n")

    def end_cell(self) -> None:
        """Without -v pytest appends the test's dot to the current line: start the test file's
        line again for it (with -v pytest writes the test's id itself, with -q a bare dot)."""
        nodeid = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        if self.tr.verbosity == 0 and nodeid:
            with self.capman.global_and_fixture_disabled():
                self.tr.write_fspath_result(nodeid, "")


class _BarFile:
    """tqdm's file under pytest: the bar starts on a line of its own."""

    def __init__(self, live: _Live):
        self.live, self.fresh = live, True
        self.encoding = getattr(sys.__stdout__, "encoding", None)  # tqdm draws with unicode blocks if utf-8

    def write(self, text: str) -> None:
        if self.fresh:
            self.live.begin()
            self.fresh = False
        if text.endswith("\n"):  # the bar is closed: the next write starts a new bar
            self.fresh = True
            if self.live.leave_open:
                text = text[:-1]
        if text:
            self.live.write(text)

    def flush(self) -> None:
        pass


def for_pytest(config, mode: str = "auto") -> Display:
    """The display of a pytest session (see the module doc); mode is --progress."""
    if mode == "off":
        return Display()
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is not None:
        return LineDisplay(_stderr_line(config), prefix=f"[{worker}] vggbench ")
    plugins = config.pluginmanager
    if plugins.getplugin("terminalreporter") is None or plugins.getplugin("capturemanager") is None:
        return for_log(sys.__stderr__)
    live = _Live(config)
    tty = bool(getattr(live.tr, "isatty", False))
    if mode == "bar" or (mode == "auto" and tty):
        return BarDisplay(live.line, _BarFile(live), live.columns, live.end_cell)
    return LineDisplay(live.line, end_cell=live.end_cell)


def _stderr_line(config) -> Callable[[str], None]:
    capman = config.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if capman is None:
            sys.__stderr__.write(line + "\n")
            sys.__stderr__.flush()
            return
        with capman.global_and_fixture_disabled():
            sys.__stderr__.write(line + "\n")
            sys.__stderr__.flush()
    return write


@contextlib.contextmanager
def working(what: str):
    """A spinner with the elapsed time on stderr while a command works (nothing when stderr is not
    a terminal); yields a function that names the current stage."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda stage: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda stage: bar.update(task, description=f"{what}: {stage}")


def workers(config) -> int:
    return int(getattr(config, "workerinput", {}).get("workercount", 1))


__all__ = ["Display", "LineDisplay", "BarDisplay", "Session", "Watch", "for_log", "for_pytest", "working",
           "workers"]
