"""pytest integration of vggbench: options, ablation parametrisation, records, tables.

Each ablation module under ablations/ names its ABLATION; its test takes the `measured` fixture,
which is parametrised here with the ablation's cells (cases x seeds) under the chosen profile.
At the end of a session (on the controller under pytest-xdist) the records of every selected
ablation are aggregated into results/<ablation>.csv and printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vggbench import records
from vggbench.cells import Options, cells_for, run_cell
from vggbench.grid import ABLATIONS
from vggbench.profiles import PROFILES

_TABLES_KEY = pytest.StashKey[dict]()
_REPORT_KEY = pytest.StashKey[str]()
_SEEN_KEY = pytest.StashKey[set]()


def _number(kind, low, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}; {what}")
        if not value >= low or (kind is float and value == 0 and low == 0):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; {what}")
        return value
    parse.__name__ = what.split()[0]
    return parse


def pytest_addoption(parser):
    g = parser.getgroup("vggbench", "vggbench ablations")
    g.addoption("--profile", default="smoke", choices=sorted(PROFILES), help="baseline settings (default smoke)")
    g.addoption("--epochs", type=_number(int, 1, "epochs must be an integer >= 1"), help="override the profile's epochs")
    g.addoption("--seeds", type=_number(int, 1, "seeds must be an integer >= 1"), default=1,
                help="repeat every cell with seeds 0..N-1 (default 1)")
    g.addoption("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    g.addoption("--width", type=_number(float, 0, "width must be a number > 0"), help="override the width multiplier")
    g.addoption("--batch-size", type=_number(int, 1, "batch size must be an integer >= 1"), help="override the batch size")
    g.addoption("--lr", type=_number(float, 0, "lr must be a number > 0"), help="override every cell's learning rate")
    g.addoption("--image-size", type=_number(int, 32, "image size must be an integer >= 32, a multiple of 32"))
    g.addoption("--train-subset", type=_number(int, 1, "train subset must be an integer >= 1"))
    g.addoption("--test-subset", type=_number(int, 1, "test subset must be an integer >= 1"))
    g.addoption("--dataset", help="another dataset than the profile's: cifar10, cifar100, tiny-imagenet, imagenet, "
                "imagefolder, synthetic (classes are taken from the data)")
    g.addoption("--data-dir", help="local copy of the dataset (hub parquet layout, pickles, image folder)")
    g.addoption("--cache-dir", help="where decoded datasets are cached")
    g.addoption("--skip-bad", action="store_true", help="skip undecodable images (counted) instead of failing")
    g.addoption("--results-dir", default="results", help="where records and tables go (default results/)")
    g.addoption("--rerun", action="store_true", help="recompute cells that already have a record")
    g.addoption("--compile", action="store_true", help="torch.compile every model (slow to start; for long runs)")
    g.addoption("--report", action="store_true",
                help="build the report (as `vggbench report`) into <results-dir>/report at session end")


def options(config) -> Options:
    o = config.option
    return Options(profile=o.profile, seeds=o.seeds, device=o.device, epochs=o.epochs, width=o.width,
                   batch_size=o.batch_size, lr=o.lr, image_size=o.image_size, train_subset=o.train_subset,
                   test_subset=o.test_subset, data_dir=o.data_dir, cache_dir=o.cache_dir, skip_bad=o.skip_bad, compile=o.compile, dataset=o.dataset)


def pytest_configure(config):
    config.stash[_SEEN_KEY] = set()
    try:
        opts = options(config)
        if opts.width is not None or opts.image_size is not None:
            opts.baseline()  # validates width / image size once, before any collection
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_generate_tests(metafunc):
    if "measured" not in metafunc.fixturenames:
        return
    name = getattr(metafunc.module, "ABLATION", None)
    if name not in ABLATIONS:
        raise pytest.UsageError(f"{metafunc.module.__name__}: ABLATION = {name!r} is not one of {', '.join(ABLATIONS)}")
    try:
        cells = cells_for(name, options(metafunc.config))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    metafunc.parametrize("cell", cells, ids=[c.test_id for c in cells])


@pytest.fixture
def measured(cell, request, record_property):
    """The cell's record: computed and written, or reused from results/runs/."""
    cfg = request.config
    record = run_cell(cell, cfg.option.results_dir, rerun=cfg.option.rerun)
    record_property("ablation", cell.ablation)
    record_property("cell_id", cell.id)
    record_property("status", record["status"])
    record_property("reused", record["reused"])
    return record


def pytest_runtest_logreport(report):
    # Runs on the controller under xdist too: remember which ablations this session touched.
    props = dict(report.user_properties)
    if report.when == "call" and "ablation" in props:
        _config.stash[_SEEN_KEY].add(props["ablation"])


_config = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    global _config
    _config = session.config


def aggregate(config) -> dict:
    """Write results/<ablation>.csv for every ablation touched: all cells of its grid (under the
    current options) that have a valid record, selected this session or earlier."""
    results_dir = Path(config.option.results_dir)
    opts = options(config)
    tables = {}
    for name in sorted(config.stash[_SEEN_KEY]):
        rows = []
        for cell in cells_for(name, opts):
            rec = records.read_record(records.record_path(results_dir, cell.id))
            if rec is not None:
                rows.append(records.flatten(rec, name, cell.case))
        df = records.table(rows)
        records.write_table(df, results_dir / f"{name}.csv")
        tables[name] = df
    return tables


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller aggregates
    session.config.stash[_TABLES_KEY] = aggregate(session.config)
    if session.config.option.report:
        session.config.stash[_REPORT_KEY] = _build_report(session)


def _build_report(session) -> str:
    """Build the report after aggregation (controller only); a failure fails the session."""
    from vggbench.report import build_report as build

    try:
        out = build(session.config.option.results_dir)
    except Exception as err:  # the results stay valid: say what broke, exit non-zero
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return f"report FAILED: {type(err).__name__}: {err}"
    return f"report written: {out['html']} and {out['md']}"


def pytest_terminal_summary(terminalreporter, config):
    tables = config.stash.get(_TABLES_KEY, {})
    if not tables:
        if _REPORT_KEY in config.stash:
            terminalreporter.write_line(config.stash[_REPORT_KEY])
        return
    cols = ["case", "seed", "status", "params", "gmacs", "train_images_per_s", "infer_images_per_s",
            "ceiling_fraction", "best_val_top1", "test_top1", "wall_s"]
    for name, df in tables.items():
        terminalreporter.section(f"vggbench: {name} -> {Path(config.option.results_dir) / (name + '.csv')}")
        terminalreporter.write_line(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
                                    if len(df) else "(no records)")
    terminalreporter.write_line(f"records: {records.runs_dir(config.option.results_dir)}/  "
                                f"report: vggbench report --results-dir {config.option.results_dir}")
    if _REPORT_KEY in config.stash:
        terminalreporter.write_line(config.stash[_REPORT_KEY])
