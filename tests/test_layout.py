"""The shape of the package: layers without circles, and modules a newcomer can read.

The layers are declared in pyproject.toml ([tool.importlinter]) and checked here with import-linter;
the circle check covers every module, listed in the layers or not."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import grimp

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


def long_without_why(paths) -> list[str]:
    """The modules over MAX_LINES lines that do not say at their top why they are long."""
    out = []
    for path in paths:
        text = path.read_text()
        if text.count("\n") > MAX_LINES and not re.search(r"^Long because\b", text[:3000], re.M):
            out.append(f"{path.name} ({text.count(os.linesep)} lines)")
    return out


def test_long_modules_say_why(tmp_path):
    offenders = long_without_why(sorted(PACKAGE.rglob("*.py")))
    assert offenders == [], (f"split them, or say at their top why not (a line starting 'Long because'): "
                             f"{', '.join(offenders)}")
    (tmp_path / "long.py").write_text('"""A module."""\n' + "x = 1\n" * MAX_LINES)  # the check can fail
    (tmp_path / "why.py").write_text('"""A module.\n\nLong because it is a table."""\n' + "x = 1\n" * MAX_LINES)
    assert long_without_why([tmp_path / "long.py", tmp_path / "why.py"]) == [f"long.py ({MAX_LINES + 1} lines)"]


# --- the test suite's own shape: tiers that cannot be bypassed (tests/conftest.py)

TEST_MODULES = sorted([*(ROOT / "tests").glob("*.py"), *(ROOT / "ablations").glob("*.py"), ROOT / "conftest.py"])


def _is_mark(decorator: ast.expr) -> bool:
    """pytest.mark.X or pytest.mark.X(...)"""
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest")


def marks_off_tests(source: str) -> list[str]:
    """Functions and classes decorated with a pytest mark that pytest would not collect as tests: the
    mark then decorates a helper, and the test it was meant for runs unmarked (in the wrong tier)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and any(
                _is_mark(d) and not (isinstance(d, ast.Call) and d.func.attr in ("usefixtures", "filterwarnings"))
                for d in node.decorator_list):
            if not node.name.startswith("Test" if isinstance(node, ast.ClassDef) else "test"):
                out.append(f"{node.name} (line {node.lineno})")
    return out


def test_a_mark_decorates_only_tests():
    found = {p.name: marks_off_tests(p.read_text()) for p in TEST_MODULES}
    assert {k: v for k, v in found.items() if v} == {}
    # what commit a1354e4 did: a helper put between the mark and the test
    assert marks_off_tests("import pytest\n@pytest.mark.slow\ndef needed(c):\n    pass\n\n"
                           "def test_x():\n    pass\n") == ["needed (line 3)"]


def starts_a_session(source: str) -> list[int]:
    """Lines that start a session of cells: a command list naming pytest and ablations, or vggbench's
    `run` (vggbench.cli run), or pytest.main."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple)):
            words = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if {"pytest", "ablations"} <= words or ({"vggbench", "run"} <= words or {"vggbench.cli", "run"} <= words):
                out.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "main"
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "pytest"):
            out.append(node.lineno)
    return out


def test_only_the_fixture_starts_a_session():
    """tests/conftest.py's `ablations` fixture is the one place: its tests are in the integration tier."""
    found = {p.name: starts_a_session(p.read_text()) for p in TEST_MODULES if p != ROOT / "tests" / "conftest.py"}
    assert {k: v for k, v in found.items() if v} == {}
    assert starts_a_session((ROOT / "tests" / "conftest.py").read_text()) != []
    assert starts_a_session('import sys\ncmd = [sys.executable, "-m", "pytest", "ablations", "-q"]\n') == [2]
    assert starts_a_session('import sys\ncmd = [sys.executable, "-m", "vggbench.cli", "run"]\n') == [2]
