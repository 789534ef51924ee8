"""The pytest plugin of vggbench (`pytest ablations`; the root conftest.py registers it): options,
ablation parametrisation, records, tables.

Each ablation module under ablations/ names its ABLATION; its test takes the `measured` fixture,
which is parametrised here with the ablation's cells (cases x seeds) under the chosen profile.
At the end of a session (on the controller under pytest-xdist) the records of every selected
ablation are aggregated into results/<ablation>.csv and printed (vggbench.session, which
`vggbench run` shares: the same cells, records and tables without pytest).

Scale-out (vggbench.launch): under `-n auto` each xdist worker gets its own GPU and a share of the
CPU threads; with `--launcher local|debug|slurm` the selected cells run as submitit jobs and the
tests read the records the jobs wrote. The first two cells failing with the same error stop the
session (fail fast).
"""
from __future__ import annotations

import pytest

from vggbench import launch, notices, preflight, progress, session as engine, status
from vggbench.cells import Cell
from vggbench.errors import UsageError
from vggbench.grid import ABLATIONS, case_selected
from vggbench.options import Options, Outputs, add_to_pytest, from_namespace
from vggbench.run import run_cell
from vggbench.statuses import Status

_END_KEY = pytest.StashKey[engine.End]()
_SEEN_KEY = pytest.StashKey[set]()
_LAUNCH_KEY = pytest.StashKey[launch.Launched]()
_SESSION_KEY = pytest.StashKey[pytest.Session]()
_FAIL_FAST_KEY = pytest.StashKey[engine.FailFast]()
_NOTICES_KEY = pytest.StashKey[list]()
_PROGRESS_KEY = pytest.StashKey[tuple]()


def pytest_addoption(parser):
    add_to_pytest(parser.getgroup("vggbench", "vggbench ablations"), Options)
    add_to_pytest(parser.getgroup("vggbench", "vggbench ablations"), Outputs)
    add_to_pytest(parser.getgroup("vggbench-launch", "vggbench scale-out (see docs/scale-out.md)"),
                  launch.LaunchOptions)


def options(config) -> Options:
    return from_namespace(Options, config.option)


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        launch.apply_worker_settings(config.workerinput)  # its GPU: before anything initialises CUDA
    config.stash[_SEEN_KEY] = set()
    config.stash[_FAIL_FAST_KEY] = engine.FailFast()
    config.stash[_NOTICES_KEY] = []
    config.pluginmanager.register(_Outcomes(config), "vggbench-outcomes")
    try:
        preflight.check_namespace(config.option)
    except UsageError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_collection_modifyitems(config, items):
    """--case ID: keep only the cells of those cases (exact, unlike -k's substring match). cells_for
    built only those; an ablation with none of them has one empty-parameter-set item, dropped here."""
    wanted = config.getoption("case", None)
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        cell = _cell_of(item)
        unselected = cell is not None and (not isinstance(cell, Cell)
                                           or not case_selected(cell.ablation, cell.case, wanted))
        (drop if unselected else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """A profile that runs its cells in parallel (the cpu profile: one 1-thread cell per core) gets
    `-n auto` unless the command line chose (-n N, -n 0, -p no:xdist): before xdist's own hook reads
    -n (registered later, this implementation runs first)."""
    workers = None if hasattr(config, "workerinput") else launch.default_workers(config.option)  # a worker: never its own
    if workers is not None:
        config.option.numprocesses = workers


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per GPU, or one per CPU core without CUDA."""
    return launch.auto_workers(config.option.device)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """On the controller, for each xdist worker: its GPU (CUDA_VISIBLE_DEVICES) and torch threads."""
    wi = node.workerinput
    wi.update(launch.worker_settings(wi["workerid"], wi["workercount"], node.config.option.device))


def pytest_generate_tests(metafunc):
    if "measured" not in metafunc.fixturenames:
        return
    name = getattr(metafunc.module, "ABLATION", None)
    try:  # --case selects before building: cells of other cases are never made
        cells = engine.cells_of(name, options(metafunc.config), metafunc.config.getoption("case", None) or ())
    except UsageError as err:  # an ABLATION that is none: say which module names it
        raise pytest.UsageError(f"{metafunc.module.__name__}: {err}" if name not in ABLATIONS else str(err)) from None
    # A cell that cannot run here (the transfer ablation without --pretrained) is skipped, saying why.
    metafunc.parametrize("cell", [pytest.param(c, marks=pytest.mark.skip(reason=c.skip)) if c.skip else c
                                  for c in cells], ids=[c.test_id for c in cells])


@pytest.fixture
def measured(cell, request, record_property):
    """The cell's record: computed and written, or reused from results/runs/, or written by the
    cell's job (--launcher). An error record makes the test fail with the cell's traceback."""
    cfg = request.config
    record_property("ablation", cell.ablation)
    record_property("cell_id", cell.id)
    launched = cfg.stash.get(_LAUNCH_KEY, None)
    display, session = cfg.stash.get(_PROGRESS_KEY, (None, None))
    # recovery made visible when it happens, on the display; what it cannot show, in the session summary
    with notices.collecting(display.said if display is not None else None) as said:
        try:
            if launched is not None and cell.id in launched.submitted:
                record = _launched_record(launched, cell, cfg.option.results_dir)
            else:
                record = run_cell(cell, cfg.option.results_dir, rerun=cfg.option.rerun, display=display,
                                  session=session)
        finally:
            record_property("notices", list(said))
    record_property("status", str(record["status"]))  # xdist sends plain strings only
    record_property("reused", record["reused"])
    if record["status"] == Status.ERROR:
        record_property("error", engine.error_line(record))
        request.node.add_report_section("call", "cell traceback", record["error"]["traceback"])
    return record


def _launched_record(launched: launch.Launched, cell, results_dir) -> dict:
    record, skipped, lost = engine.launched_record(launched, cell, results_dir)
    if skipped:
        pytest.skip(skipped)
    if lost:
        pytest.fail(lost, pytrace=False)
    return record


def _cell_of(item):
    """The Cell a collected ablation test runs, or None for any other test."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("cell") if callspec is not None else None


def pytest_collection_finish(session):
    """The session's cells: for the progress display (vggbench.progress) and `vggbench status`."""
    config = session.config
    cells = [c for c in map(_cell_of, session.items) if c is not None]
    if config.option.collectonly or not cells:
        return
    config.stash[_PROGRESS_KEY] = (progress.for_pytest(config, config.option.progress),
                                   progress.Session(cells, config.option.results_dir, progress.workers(config)))
    if getattr(config, "workerinput", {}).get("workerid", "gw0") == "gw0":  # xdist: the controller collects nothing
        status.save_selection(config.option.results_dir, cells)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """--launcher: run the selected cells as submitit jobs first; the tests then read their records,
    in the order the jobs finished (so fail fast stops after the first two failures)."""
    config = session.config
    if config.option.launcher == "inprocess" or config.option.collectonly or not session.items:
        return None
    cells = {c.id: c for c in map(_cell_of, session.items) if c is not None and not c.skip}
    tr = config.pluginmanager.get_plugin("terminalreporter")
    log = tr.write_line if tr is not None else print
    launched = engine.launch_first(list(cells.values()), config.option.results_dir, launch.LaunchOptions.of(config.option),
                                   config.option.rerun, log)
    config.stash[_LAUNCH_KEY] = launched
    order = {cid: i for i, cid in enumerate(launched.outcomes)}

    def finishing_order(item):
        cell = _cell_of(item)
        return order.get(cell.id, len(order)) if cell is not None else len(order)

    session.items.sort(key=finishing_order)
    return None


class _Outcomes:
    """The hook that sees every test's outcome (on the controller under xdist too): it holds its
    session's config, so no module global does."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        # Remember which ablations this session touched (a cell skipped as "submitted" under --no-wait too).
        stash = self.config.stash
        props = dict(report.user_properties)
        if "ablation" in props:
            stash[_SEEN_KEY].add(props["ablation"])
        if report.when == "call" or (report.when == "setup" and report.failed):
            stash[_NOTICES_KEY].extend(props.get("notices", []))
        if report.when == "call" and "status" in props and not props["reused"] and not hasattr(self.config, "workerinput"):
            self.fail_fast(props.get("error"))

    def fail_fast(self, error: str | None) -> None:
        """Stop the session when the first two cells computed in it failed with the same error."""
        reason = self.config.stash[_FAIL_FAST_KEY].add(error)
        if reason:
            self.config.stash[_SESSION_KEY].shouldstop = reason
            dsession = self.config.pluginmanager.get_plugin("dsession")  # pytest-xdist's controller loop
            if dsession is not None:
                dsession.shouldstop = reason


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    session.config.stash[_SESSION_KEY] = session


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller aggregates
    config, o = session.config, session.config.option
    end = engine.finish(options(config), config.stash[_SEEN_KEY], results_dir=o.results_dir, report=o.report,
                        data_dir=o.data_dir, cache_dir=o.cache_dir)
    if end.failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_END_KEY] = end


def pytest_terminal_summary(terminalreporter, config):
    end = config.stash.get(_END_KEY, engine.End())
    engine.summarise(end, options(config), config.option.results_dir, config.stash.get(_NOTICES_KEY, []) + end.said,
                     terminalreporter.section, terminalreporter.write_line)
