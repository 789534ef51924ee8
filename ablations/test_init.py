"""Initialisation without batch norm: the paper's N(0, 0.01) vs Xavier vs Kaiming, on D and E.

The cases are data in vggbench.grid.ABLATIONS["init"]; each runs as one cell per seed. The test
asserts that the measurement is valid (vggbench.cells.problems), not what the science says: that
is the report's job.
"""
from vggbench.cells import problems

ABLATION = "init"


def test_init(measured):
    assert problems(measured) == []
