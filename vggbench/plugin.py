"""The pytest plugin of vggbench (`pytest ablations`; the root conftest.py registers it): options,
ablation parametrisation, records, tables.

Each ablation module under ablations/ names its ABLATION; its test takes the `measured` fixture,
which is parametrised here with the ablation's cells (cases x seeds) under the chosen profile.
At the end of a session (on the controller under pytest-xdist) the records of every selected
ablation are aggregated into results/<ablation>.csv and printed (vggbench.tables).

Scale-out (vggbench.launch): under `-n auto` each xdist worker gets its own GPU and a share of the
CPU threads; with `--launcher local|debug|slurm` the selected cells run as submitit jobs and the
tests read the records the jobs wrote. The first two cells failing with the same error stop the
session (fail fast).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from vggbench import launch, notices, preflight, progress, records, status, tables
from vggbench.cells import Cell, baseline, cells_for, tuned
from vggbench.options import Options, Outputs, add_to_pytest, from_namespace
from vggbench.run import finished_record, run_cell
from vggbench.trainer import STATUS_MEANS
from vggbench.grid import ABLATIONS, case_selected

_TABLES_KEY = pytest.StashKey[dict]()
_REPORT_KEY = pytest.StashKey[str]()
_SEEN_KEY = pytest.StashKey[set]()
_LAUNCH_KEY = pytest.StashKey[launch.Launched]()
_SESSION_KEY = pytest.StashKey[pytest.Session]()
_FIRST_ERRORS_KEY = pytest.StashKey[list]()
_NOTICES_KEY = pytest.StashKey[list]()
_PROGRESS_KEY = pytest.StashKey[tuple]()


def pytest_addoption(parser):
    add_to_pytest(parser.getgroup("vggbench", "vggbench ablations"), Options)
    add_to_pytest(parser.getgroup("vggbench", "vggbench ablations"), Outputs)
    add_to_pytest(parser.getgroup("vggbench-launch", "vggbench scale-out (see README: Scale-out and resume)"),
                  launch.LaunchOptions)


def options(config) -> Options:
    return from_namespace(Options, config.option)


def launch_options(config) -> launch.LaunchOptions:
    return launch.LaunchOptions.of(config.option)


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        launch.apply_worker_settings(config.workerinput)  # its GPU: before anything initialises CUDA
    config.stash[_SEEN_KEY] = set()
    config.stash[_FIRST_ERRORS_KEY] = []
    config.stash[_NOTICES_KEY] = []
    try:
        preflight.check_namespace(config.option)
    except ValueError as err:
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
    if name not in ABLATIONS:
        raise pytest.UsageError(f"{metafunc.module.__name__}: ABLATION = {name!r} is not one of {', '.join(ABLATIONS)}")
    try:  # --case selects before building: cells of other cases are never made
        cells = cells_for(name, options(metafunc.config), metafunc.config.getoption("case", None) or ())
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
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
    record_property("status", record["status"])
    record_property("reused", record["reused"])
    if record["status"] == "error":
        err = record["error"]
        record_property("error", f"{err['type']}: {err['message']}")
        request.node.add_report_section("call", "cell traceback", err["traceback"])
    return record


def _launched_record(launched: launch.Launched, cell, results_dir) -> dict:
    job = launched.submitted[cell.id]
    outcome = launched.outcomes.get(cell.id)
    if outcome is None:
        if launched.stopped:
            pytest.skip(f"job {job} cancelled: {launched.stopped}")
        pytest.skip(f"submitted as job {job}; when it is done: vggbench collect --results-dir {results_dir}")
    record = records.read_record(records.record_path(results_dir, cell.id))
    if record is None:
        pytest.fail(f"job {job} left no record: {outcome.get('error')} (log: {outcome.get('log')})", pytrace=False)
    return {**record, "reused": False}


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
    results_dir = config.option.results_dir
    todo = [c for c in cells.values() if config.option.rerun or finished_record(c, results_dir) is None]
    tr = config.pluginmanager.get_plugin("terminalreporter")
    log = tr.write_line if tr is not None else print
    launched = launch.launch(todo, results_dir, launch_options(config), rerun=config.option.rerun, log=log)
    config.stash[_LAUNCH_KEY] = launched
    order = {cid: i for i, cid in enumerate(launched.outcomes)}

    def finishing_order(item):
        cell = _cell_of(item)
        return order.get(cell.id, len(order)) if cell is not None else len(order)

    session.items.sort(key=finishing_order)
    return None


def pytest_runtest_logreport(report):
    # Runs on the controller under xdist too: remember which ablations this session touched
    # (a cell skipped as "submitted" under --no-wait too).
    props = dict(report.user_properties)
    if "ablation" in props:
        _config.stash[_SEEN_KEY].add(props["ablation"])
    if report.when == "call" or (report.when == "setup" and report.failed):
        _config.stash[_NOTICES_KEY].extend(props.get("notices", []))
    if report.when == "call" and "status" in props and not props["reused"] and not hasattr(_config, "workerinput"):
        _fail_fast(props.get("error"))


def _fail_fast(error: str | None) -> None:
    """Stop the session when the first two cells computed in it failed with the same error."""
    first = _config.stash[_FIRST_ERRORS_KEY]
    first.append(error)
    reason = launch.fail_fast(first) if len(first) == launch.FAIL_FAST_AFTER else None
    if reason:
        _config.stash[_SESSION_KEY].shouldstop = reason
        dsession = _config.pluginmanager.get_plugin("dsession")  # pytest-xdist's controller loop
        if dsession is not None:
            dsession.shouldstop = reason


_config = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    global _config
    _config = session.config
    _config.stash[_SESSION_KEY] = session


def aggregate(config) -> dict:
    """Write results/<ablation>.csv for every ablation touched: all cells of its grid (under the
    current options) that have a valid record, selected this session or earlier. The session's
    options are saved for `vggbench collect`."""
    seen = config.stash[_SEEN_KEY]
    if not seen:
        return {}
    tables.save_session(config.option.results_dir, options(config), seen)
    return tables.aggregate(config.option.results_dir, seen, options(config))


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller aggregates
    config = session.config
    with notices.collecting() as said:
        try:
            config.stash[_TABLES_KEY] = aggregate(config)
        except OSError as err:  # a full disk: the cells' own errors stand; one line, a normal summary
            said.append(f"tables not written ({type(err).__name__}: {err}); when there is room: "
                        f"vggbench collect --results-dir {config.option.results_dir}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if config.stash[_SEEN_KEY]:
            older = records.older_identity(config.option.results_dir)
            if older:
                said.append(f"{older} records of an older identity in {records.runs_dir(config.option.results_dir)}/ "
                            "were not used (written before cell ids covered the data's content; see README)")
    config.stash[_NOTICES_KEY].extend(said)
    if session.config.option.report:
        session.config.stash[_REPORT_KEY] = _build_report(session)


def _build_report(session) -> str:
    """Build the report after aggregation (controller only); a failure fails the session."""
    from vggbench.report import build_report as build

    try:
        o = session.config.option   # the session's data and cache folders serve the report's figures too
        out = build(o.results_dir, data_dir=o.data_dir, cache_dir=o.cache_dir)
    except Exception as err:  # the results stay valid: say what broke, exit non-zero
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return f"report FAILED: {type(err).__name__}: {err}"
    return f"report written: {out['html']} and {out['md']}"


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash.get(_NOTICES_KEY, []):
        terminalreporter.write_line(f"vggbench: {line}")
    tables = config.stash.get(_TABLES_KEY, {})
    if not tables:
        if _REPORT_KEY in config.stash:
            terminalreporter.write_line(config.stash[_REPORT_KEY])
        return
    cols = ["case", "seed", "status", "params", "gmacs", "train_images_per_s", "infer_images_per_s",
            "ceiling_fraction", "best_val_top1", "test_top1", "wall_s"]
    opts = options(config)
    for name, df in tables.items():
        terminalreporter.section(f"vggbench: {name} -> {Path(config.option.results_dir) / (name + '.csv')}")
        shown = cols[:3] + ["lr", "tuned"] + cols[3:] if ABLATIONS[name].tune_by_default or opts.tune else cols
        shown = shown + [c for c in df.columns if c.startswith("eval_")]  # section 3.2's test-time methods
        terminalreporter.write_line(df[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}")
                                    if len(df) else "(no records)")
        for word in sorted(set(df.status) & set(STATUS_MEANS)) if len(df) else ():
            terminalreporter.write_line(f"vggbench: {word}: {STATUS_MEANS[word]}")
        if ABLATIONS[name].tune_by_default and not tuned(ABLATIONS[name], baseline(opts), opts):
            why = "--lr fixes every rate" if opts.lr is not None else f"the {opts.profile} profile's budget"
            terminalreporter.write_line(f"vggbench: {name}: compared at fixed learning rates, not tuned ({why}): "
                                        "--tune lr tunes each case first")
    terminalreporter.write_line(f"records: {records.runs_dir(config.option.results_dir)}/  "
                                f"report: vggbench report --results-dir {config.option.results_dir}")
    if _REPORT_KEY in config.stash:
        terminalreporter.write_line(config.stash[_REPORT_KEY])
