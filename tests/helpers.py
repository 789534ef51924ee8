"""Helpers shared by the test modules (which never import each other). Starting a `pytest
ablations` session is not here: that is the `ablations` fixture of conftest.py, and only it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
# A short training that still exercises the whole cell: one epoch on a small subset.
FAST = ["--epochs", "1", "--train-subset", "160", "--test-subset", "100"]


def collected(ablations, *args):
    """The test ids (`test_kernel[D-3x3-s0]`) that `pytest ablations --collect-only ARGS` selects."""
    out = ablations("--collect-only", *args).stdout
    return sorted(line.split("::")[1] for line in out.splitlines() if "::" in line)


def record_of(cell, **fields) -> dict:
    """A minimal well-formed record of `cell` (its id, its configuration) with `fields` on top: what
    records.read_record accepts as the cell's own (a record of another shape is set aside)."""
    return {"cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation, "case": cell.case,
            "status": "ok", **fields}
