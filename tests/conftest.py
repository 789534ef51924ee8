"""The test tiers and the one way a test starts a `pytest ablations` (or `vggbench run`) session.

Two tiers, gated here the way Lightning gates its own (in `pytest_collection_modifyitems`):
- the fast tier, the default `pytest`: everything not marked below;
- the second tier, `pytest -m "integration or slow or data or browser"`: tests that start a whole
  session in a subprocess (`integration`, applied automatically to every test that uses the
  `ablations` fixture, so no test can start one untiered), take long (`slow`), need the real
  CIFAR-10 copy (`data`) or Chromium (`browser`).
The default deselection is `-m` in pyproject's addopts; a later `-m` on the command line replaces it.
"""
import os
import subprocess
import sys

import pytest

from helpers import ROOT, TESTS


def run_ablations(*args, results=None, env=None, plugins=(), background=False, timeout=600, front="pytest"):
    """`pytest ablations -q ARGS` in a subprocess of its own, from the repository root.

    results: `--results-dir`; env: extra environment variables; plugins: modules of tests/ loaded
    with `-p` (tests/ goes on the child's PYTHONPATH); background: return the running Popen
    (stdout and stderr merged) instead of the finished CompletedProcess; front: "vggbench" for the
    same session as `vggbench run ARGS` (no pytest, no plugins)."""
    if front == "vggbench":
        assert not plugins, "plugins are pytest's"
        cmd = [sys.executable, "-m", "vggbench.cli", "run"]
    else:
        cmd = [sys.executable, "-m", "pytest", "ablations", "-p", "no:cacheprovider", "-q"]
    for plugin in plugins:
        cmd += ["-p", plugin]
    cmd += [str(a) for a in args]
    if results is not None:
        cmd += ["--results-dir", str(results)]
    # not PYTEST_XDIST_* of this test's own worker: the child is a session of its own
    child = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    if plugins:
        child["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), child.get("PYTHONPATH", "")) if p)
    child.update(env or {})
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=child, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, cwd=ROOT, env=child, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ablations():
    """Start `pytest ablations` (or `vggbench run`: front="vggbench") in a subprocess:
    `ablations(*args, results=..., env=..., ...)` (see run_ablations). Every test that uses it is in the integration tier."""
    return run_ablations


@pytest.hookimpl(tryfirst=True)  # before the -m deselection sees the items
def pytest_collection_modifyitems(config, items):
    integration = pytest.mark.integration
    for item in items:
        if "ablations" in getattr(item, "fixturenames", ()):
            item.add_marker(integration)
