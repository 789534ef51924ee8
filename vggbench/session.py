"""A session of ablation cells, with or without pytest: which cells, fail fast, and the end
(tables, notices, report, the summary printed).

Two front ends share it: the pytest plugin (vggbench.plugin, `pytest ablations`: each cell a test)
and `vggbench run` (`run` below: the same options, cells and records, no pytest). What differs is
only how a cell is shown and how the session stops.
"""
from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import launch, notices, preflight, progress, records, status, tables
from .cells import Cell, baseline, cells_for, tuned
from .errors import UsageError
from .grid import ABLATIONS, case_selected
from .options import Options, Outputs, from_namespace
from .run import finished_record, problems, run_cell
from .statuses import Status
from .trainer import STATUS_MEANS

# The columns of an ablation's table in the session summary (all of them are in <ablation>.csv).
SUMMARY_COLUMNS = ["case", "seed", "status", "params", "gmacs", "train_images_per_s", "infer_images_per_s",
                   "ceiling_fraction", "best_val_top1", "test_top1", "wall_s"]


def cells_of(ablation: str, opts: Options, cases=()) -> list[Cell]:
    """The cells of one ablation that a session runs: its grid under opts, only the `--case` ones."""
    if ablation not in ABLATIONS:
        raise UsageError(f"ABLATION = {ablation!r} is not one of {', '.join(ABLATIONS)}")
    return [c for c in cells_for(ablation, opts, cases) if not cases or case_selected(c.ablation, c.case, cases)]


class FailFast:
    """The first cells computed in a session: when the first two failed with the same error, the
    reason to stop (launch.fail_fast); None otherwise."""

    def __init__(self):
        self.first: list[str | None] = []

    def add(self, error: str | None) -> str | None:
        self.first.append(error)
        return launch.fail_fast(self.first) if len(self.first) == launch.FAIL_FAST_AFTER else None


def error_line(record: dict) -> str | None:
    """A cell's error as one line (what fail fast compares); None for a cell that did not raise."""
    if record["status"] != Status.ERROR:
        return None
    return f"{record['error']['type']}: {record['error']['message']}"


def launched_record(launched: launch.Launched, cell: Cell, results_dir) -> tuple[dict | None, str | None, str | None]:
    """The record a submitit job wrote for `cell`, as (record, why skipped, why failed)."""
    job = launched.submitted[cell.id]
    outcome = launched.outcomes.get(cell.id)
    if outcome is None:
        if launched.stopped:
            return None, f"job {job} cancelled: {launched.stopped}", None
        return None, f"submitted as job {job}; when it is done: vggbench collect --results-dir {results_dir}", None
    record = records.read_record(records.record_path(results_dir, cell.id))
    if record is None:
        return None, None, f"job {job} left no record: {outcome.get('error')} (log: {outcome.get('log')})"
    return {**record, "reused": False}, None, None


def launch_first(cells: list[Cell], results_dir, launch_opts: launch.LaunchOptions, rerun: bool,
                 log: Callable[[str], None]) -> launch.Launched:
    """--launcher: the cells without a finished record go out as submitit jobs (launch.launch)."""
    todo = [c for c in cells if not c.skip and (rerun or finished_record(c, results_dir) is None)]
    return launch.launch(todo, results_dir, launch_opts, rerun=rerun, log=log)


@dataclass
class End:
    """What a session's end made: the tables, the lines to say, the report's line; failed: the
    session must exit non-zero though every cell may have passed (tables or report not written)."""
    tables: dict = field(default_factory=dict)
    said: list[str] = field(default_factory=list)
    report: str | None = None
    failed: bool = False


def finish(opts: Options, seen, *, results_dir: str, report: bool, data_dir=None, cache_dir=None) -> End:
    """Write results/<ablation>.csv for every ablation touched (all cells of its grid under opts that
    have a valid record, this session's or earlier), save the options for `vggbench collect`, and
    build the report if asked."""
    end = End()
    with notices.collecting() as said:
        if seen:
            try:
                tables.save_session(results_dir, opts, seen)
                end.tables = tables.aggregate(results_dir, seen, opts)
            except OSError as err:  # a full disk: the cells' own errors stand; one line, a normal summary
                said.append(f"tables not written ({type(err).__name__}: {err}); when there is room: "
                            f"vggbench collect --results-dir {results_dir}")
                end.failed = True
            older = records.older_identity(results_dir)
            if older:
                said.append(f"{older} records of an older identity in {records.runs_dir(results_dir)}/ "
                            "were not used (written before cell ids covered the data's content; see docs/running.md)")
    end.said = list(said)
    if report:
        from .report import build_report

        try:  # the session's data and cache folders serve the report's figures too
            out = build_report(results_dir, data_dir=data_dir, cache_dir=cache_dir)
            end.report = f"report written: {out['html']} and {out['md']}"
        except Exception as err:  # the results stay valid: say what broke, exit non-zero
            end.failed = True
            end.report = f"report FAILED: {type(err).__name__}: {err}"
            if not isinstance(err, UsageError):  # a bug: its traceback, to find it
                end.report += "\n" + "".join(traceback.format_exception(err)).rstrip()
    return end


def summarise(end: End, opts: Options, results_dir: str, said: list[str], section: Callable[[str], None],
              line: Callable[[str], None]) -> None:
    """The session summary: its notices, each table touched, where the records and report are."""
    for text in said:
        line(f"vggbench: {text}")
    if not end.tables:
        if end.report is not None:
            line(end.report)
        return
    for name, df in end.tables.items():
        section(f"vggbench: {name} -> {Path(results_dir) / (name + '.csv')}")
        cols = SUMMARY_COLUMNS
        shown = cols[:3] + ["lr", "tuned"] + cols[3:] if ABLATIONS[name].tune_by_default or opts.tune else cols
        shown = shown + [c for c in df.columns if c.startswith("eval_")]  # section 3.2's test-time methods
        line(df[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(df) else "(no records)")
        for word in sorted(set(df.status) & set(STATUS_MEANS)) if len(df) else ():
            line(f"vggbench: {word}: {STATUS_MEANS[word]}")
        if ABLATIONS[name].tune_by_default and not tuned(ABLATIONS[name], baseline(opts), opts):
            why = "--lr fixes every rate" if opts.lr is not None else f"the {opts.profile} profile's budget"
            line(f"vggbench: {name}: compared at fixed learning rates, not tuned ({why}): "
                 "--tune lr tunes each case first")
    line(f"records: {records.runs_dir(results_dir)}/  report: vggbench report --results-dir {results_dir}")
    if end.report is not None:
        line(end.report)


def run(ns, ablations=(), out=None) -> int:
    """`vggbench run`: the cells `pytest ablations` with the same options would run, in this process
    or as submitit jobs (--launcher), written to the same records under the same ids; then the same
    tables and summary. ns: the parsed options (preflight.session_parser's). Exit status as pytest's:
    0 every cell valid, 1 a cell failed (an error record or an invalid measurement)."""
    out = out or sys.stdout
    opts, outputs = from_namespace(Options, ns), from_namespace(Outputs, ns)
    launch_opts = launch.LaunchOptions.of(ns)
    preflight.check_namespace(ns)
    cases = outputs.case
    cells = [c for name in (ablations or ABLATIONS) for c in cells_of(name, opts, cases)]
    results_dir = outputs.results_dir

    def line(text: str) -> None:
        print(text, file=out, flush=True)

    def section(title: str) -> None:
        line(f"{'=' * 8} {title} {'=' * 8}")

    runnable = [c for c in cells if not c.skip]
    for c in cells:
        if c.skip:
            line(f"vggbench: {c.ablation}/{c.test_id} skipped: {c.skip}")
    display = (progress.Display() if outputs.progress == "off" else progress.for_log(sys.stderr))
    session = progress.Session(runnable, results_dir, 1)
    if runnable:
        status.save_selection(results_dir, runnable)
    launched = (launch_first(runnable, results_dir, launch_opts, outputs.rerun, line)
                if launch_opts.launcher != "inprocess" and runnable else None)
    seen, said, failed, fail_fast, stop = set(), [], 0, FailFast(), None
    for cell in runnable:
        with notices.collecting(display.said) as heard:
            if launched is not None and cell.id in launched.submitted:
                record, skipped, lost = launched_record(launched, cell, results_dir)
            else:
                record, skipped, lost = run_cell(cell, results_dir, rerun=outputs.rerun, display=display,
                                                 session=session), None, None
        said += heard
        seen.add(cell.ablation)
        name = f"{cell.ablation}/{cell.test_id}"
        if skipped or lost:
            line(f"vggbench: {name} {'skipped' if skipped else 'FAILED'}: {skipped or lost}")
            failed += bool(lost)
            continue
        wrong = problems(record)
        line(f"vggbench: {name} {record['status']}{' (reused)' if record['reused'] else ''}"
             + (f" FAILED: {'; '.join(wrong)}" if wrong else ""))
        failed += bool(wrong)
        if not record["reused"]:
            stop = fail_fast.add(error_line(record))
            if stop:
                line(f"vggbench: stopped: {stop}")
                break
    end = finish(opts, seen, results_dir=results_dir, report=outputs.report, data_dir=opts.data_dir,
                 cache_dir=opts.cache_dir)
    summarise(end, opts, results_dir, said + end.said, section, line)
    return 1 if failed or end.failed or stop else 0
