"""The shape of the package: layers without circles, and modules a newcomer can read.

The layers are declared in pyproject.toml ([tool.importlinter]) and checked here with import-linter;
the circle check covers every module, listed in the layers or not."""
from __future__ import annotations

import os
import re
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vggbench"
MAX_LINES = 400  # a longer module states why at its top ("Long because ...")


def test_layers_contract_holds(monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def _cycle(graph: grimp.ImportGraph, modules: set[str]) -> list[str] | None:
    """One import circle among `modules` (as a path a -> b -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.find_modules_directly_imported_by(m) & modules):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(modules):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_module_imports_in_a_circle():
    graph = grimp.build_graph("vggbench")
    # A package's __init__ re-exports its modules: an edge from it is not a dependency of the package's code.
    modules = {m for m in graph.modules if m.startswith("vggbench.")
               and not (PACKAGE / m.removeprefix("vggbench.").replace(".", "/") / "__init__.py").exists()}
    assert _cycle(graph, modules) is None


def test_the_circle_check_finds_a_circle():
    graph = grimp.ImportGraph()
    for m in ("p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycle(graph, {"p.a", "p.b", "p.c"}) is None
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycle(graph, {"p.a", "p.b", "p.c"}) == ["p.a", "p.b", "p.c", "p.a"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_long_modules_say_why(path):
    text = path.read_text()
    if text.count("\n") > MAX_LINES:
        head = text[:3000]
        assert re.search(r"^Long because\b", head, re.M), (
            f"{path.relative_to(ROOT)} has {text.count(os.linesep)} lines: split it, or say at its top why not "
            "(a line starting 'Long because')")
