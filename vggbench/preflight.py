"""Everything a session checks before it collects a cell: bad input is one usage error here, said
once, with nothing written, instead of one error per ablation module or per cell.

`check` is what the pytest plugin's `pytest_configure` runs; it is a plain function so that every
bad input can be tested in-process (tests/test_bad_input.py), and `session_parser` parses a
session's command line the way pytest does, from the same declarations (vggbench.options).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vggbench import tables
from vggbench.cells import baseline, check_runnable
from vggbench.data import DATASETS, load_data
from vggbench.data.sources import HUB_ID, cache_root
from vggbench.device import resolve_device
from vggbench.errors import UsageError
from vggbench.faults import injected
from vggbench.grid import check_case_names
from vggbench.launch import LaunchOptions
from vggbench.options import Options, Outputs, add_to_argparse, declared, from_namespace


def check_namespace(ns) -> None:
    """check() for a parsed command line: pytest's config.option, or session_parser()'s namespace."""
    check(from_namespace(Options, ns), LaunchOptions.of(ns), results_dir=ns.results_dir,
          numprocesses=getattr(ns, "numprocesses", None), cases=tuple(getattr(ns, "case", None) or ()))


def check(opts: Options, launch_opts: LaunchOptions, *, results_dir: str, numprocesses=None,
          cases: tuple[str, ...] = ()) -> None:
    """Raise UsageError for the first bad input of a session; write nothing."""
    base = baseline(opts)  # validates width / image size once, before any collection
    tables.check_results_dir(results_dir)
    cache_root(opts.cache_dir)
    if opts.dataset is not None and opts.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {opts.dataset!r}: choose one of {', '.join(sorted(DATASETS))}")
    try:
        resolve_device(opts.device)
    except RuntimeError:
        raise UsageError(f"--device {opts.device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if opts.data_dir and not Path(opts.data_dir).expanduser().exists() and not HUB_ID.fullmatch(opts.data_dir):
        raise UsageError(f"--data-dir {opts.data_dir}: no such directory; give the folder that holds the dataset")
    injected()  # a malformed $VGGBENCH_INJECT (a test hook)
    if launch_opts.launcher != "inprocess" and numprocesses:
        raise UsageError(f"--launcher {launch_opts.launcher} and -n do not combine: the launcher runs the cells in "
                         "parallel already; drop -n")
    if launch_opts.no_wait and launch_opts.launcher not in ("local", "slurm"):
        raise UsageError("--no-wait needs --launcher local or --launcher slurm")
    if launch_opts.launcher == "slurm" and shutil.which("srun") is None:
        raise UsageError("--launcher slurm: no `srun` here; run from a Slurm login node, or use --launcher local")
    check_case_names(cases)
    check_runnable(opts, cases)  # before any data is made
    if base.data.dataset != "synthetic" or opts.train_subset or opts.test_subset:
        # Bad data (an empty folder, undecodable images, labels outside the classes, a subset
        # larger than the data ...) is one usage error here, not one per ablation module.
        # Memoised: the collection's cells_for reuses it. The embedded synthetic set cannot fail.
        data = load_data(base.data)
        if data.num_classes != base.model.num_classes:
            raise UsageError(f"--profile {opts.profile} expects {base.model.num_classes} classes but {data.origin} "
                             f"has {data.num_classes}: give --dataset imagefolder (classes taken from the data) "
                             "or the profile of this data")


def session_options(parser: argparse.ArgumentParser) -> None:
    """Every option of a session (those pytest gets from the plugin) as flags of `parser`."""
    for cls in (Options, Outputs, LaunchOptions):
        add_to_argparse(parser, cls, names=[f.name for f in declared(cls)])


def session_parser(**kwargs) -> argparse.ArgumentParser:
    """A parser of every session option (those pytest gets from the plugin, and xdist's -n)."""
    parser = argparse.ArgumentParser(prog="pytest ablations", **kwargs)
    session_options(parser)
    parser.add_argument("-n", "--numprocesses", dest="numprocesses")
    return parser
