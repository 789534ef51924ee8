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


# --- the layout document (docs/development.md, "## Layout"): every module of vggbench/ named, none that is gone

LAYOUT_DOC = ROOT / "docs" / "development.md"
INDENT = 2    # spaces per folder level in the tree
COLUMN = 21   # where a line's description starts, counted from its name


def layout_entries(doc: str) -> list[tuple[int, str, int]]:
    """(line number, path under vggbench/, indent) of every file and folder the layout tree names: the
    lines under `vggbench/` in the first code block after "## Layout"; a folder is a name ending in "/",
    its entries are indented one level more; "a.py, b.py" names two files."""
    lines = doc.splitlines()
    heading = next((i for i, line in enumerate(lines) if line.strip() == "## Layout"), None)
    assert heading is not None, f'{LAYOUT_DOC.name} has no "## Layout" section: the tree of vggbench/ belongs there'
    fences = [i for i in range(heading + 1, len(lines)) if lines[i].startswith("```")][:2]
    assert len(fences) == 2, f'the "## Layout" section of {LAYOUT_DOC.name} has no code block with the tree'
    out, folders, inside = [], [], False
    for i in range(fences[0] + 1, fences[1]):
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip():
            continue
        if indent == 0:
            inside = line.split()[0] == "vggbench/"
            continue
        if not inside:
            continue
        level = indent // INDENT - 1
        assert indent % INDENT == 0 and level <= len(folders), (
            f"line {i + 1} of {LAYOUT_DOC.name}: indent entries by {INDENT} spaces per folder level")
        del folders[level:]
        for name in (n.strip() for n in re.split(r"\s{2,}", line.strip())[0].split(",")):
            out.append((i + 1, "".join(folders) + name, indent))
        if name.endswith("/"):
            folders.append(name)
    return out


def layout_problems(doc: str, package: Path) -> list[str]:
    """What the layout tree in `doc` gets wrong about `package`, each as the one edit that fixes it."""
    entries = layout_entries(doc)
    named = [path for _, path, _ in entries]
    problems = [f"{LAYOUT_DOC.name} lines {', '.join(str(n) for n, p, _ in entries if p == path)}: the layout "
                f"names vggbench/{path} more than once; keep one line"
                for path in sorted({p for p in named if named.count(p) > 1})]
    problems += [f"{LAYOUT_DOC.name} line {n}: the layout names vggbench/{path}, which does not exist; remove "
                 f"that line (or rename it to the module that replaced it)"
                 for n, path, _ in entries if not (package / path).exists()]
    modules = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py")
                     if p.name != "__init__.py" and "__pycache__" not in p.parts)
    for module in (m for m in modules if m not in named):
        *folders, name = module.split("/")
        # the deepest folder of the module that the tree already has (vggbench/ itself at worst) ...
        depth = next(d for d in range(len(folders), -1, -1) if d == 0 or "".join(f"{f}/" for f in folders[:d]) in named)
        prefix = "".join(f"{f}/" for f in folders[:depth])
        after = max((n for n, path, _ in entries if path.startswith(prefix)), default=None)
        # ... then a line for each folder it lacks, and one for the module, each one level further in
        new_lines = [(INDENT * (k + 1), f"{folders[k]}/", "holds") for k in range(depth, len(folders))]
        new_lines.append((INDENT * (len(folders) + 1), name, "does"))
        lines = " then ".join(f"`{(' ' * indent + entry).ljust(indent + COLUMN)}<what it {verb}>`"
                              for indent, entry, verb in new_lines)
        problems.append(f"vggbench/{module} is missing from the layout of {LAYOUT_DOC.relative_to(ROOT)}: add "
                        f"{lines} after line {after} (under {'vggbench/' + prefix})")
    return problems


def test_the_layout_document_names_every_module():
    problems = layout_problems(LAYOUT_DOC.read_text(), PACKAGE)
    assert problems == [], "\n".join(problems)


def test_the_layout_check_names_the_line_to_add_or_remove(tmp_path):
    package = tmp_path / "pkg"
    for module in ("a.py", "gone_soon.py", "report/__init__.py", "report/build.py", "report/new.py",
                   "measurement/__init__.py", "measurement/speed.py", "notes.json"):
        (package / module).parent.mkdir(parents=True, exist_ok=True)
        (package / module).write_text("")
    doc = ("# Development\n\n## Layout\n\nThe tree:\n\n```\nconftest.py            the plugin\nvggbench/\n"
           "  a.py, gone_soon.py   two modules\n"      # line 10
           "  report/              the report\n"       # line 11
           "    build.py             the sections\n"   # line 12
           "  old.py               moved away\n"       # line 13
           "  notes.json           data\n"             # line 14
           "  a.py                 again\n"            # line 15
           "```\n")
    assert layout_problems(doc, package) == [
        "development.md lines 10, 15: the layout names vggbench/a.py more than once; keep one line",
        "development.md line 13: the layout names vggbench/old.py, which does not exist; remove that line "
        "(or rename it to the module that replaced it)",
        "vggbench/measurement/speed.py is missing from the layout of docs/development.md: add "
        "`  measurement/         <what it holds>` then `    speed.py             <what it does>` after line 15 "
        "(under vggbench/)",
        "vggbench/report/new.py is missing from the layout of docs/development.md: add "
        "`    new.py               <what it does>` after line 12 (under vggbench/report/)"]
    assert layout_problems(doc.replace("  old.py ", "    new.py").replace("  a.py                 again\n", "")
                           .replace("  notes.json ", "  measurement/\n    speed.py \n  notes.json "), package) == []


# --- the README's set-up and test commands are what CI (.ci/run) runs

def commands(text: str, section: str | None = None) -> set[str]:
    """The pip and pytest command lines of `text` (of the code blocks of its Markdown `section` if given),
    without comments, quotes, per-run paths and --durations, which CI adds."""
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
        text = "\n".join(re.findall(r"```\w*\n(.*?)```", text, re.S))
    out = set()
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$|--durations=\S+|--results-dir \S+|[\"']", "", line).split()
        if line[:1] == ["pytest"] or line[:4] == ["python", "-m", "pip", "install"]:
            out.add(" ".join(line))
    return out


def test_the_readme_commands_are_what_ci_runs():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    setup, tests = commands(readme, "Set-up"), commands(readme, "Tests")
    assert setup == {"python -m pip install -e ."} and len(tests) == 3, (setup, tests)
    assert setup | tests <= commands(ci), f"README commands CI does not run: {(setup | tests) - commands(ci)}"
    assert not commands(readme.replace("-n 2", "-n 3"), "Tests") <= commands(ci)   # the check can fail
