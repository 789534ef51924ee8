"""Depth (paper Table 3): configurations A, A-LRN, B, C, D, E of Table 1.

The cases are data in vggbench.grid.ABLATIONS["depth"]; each runs as one cell per seed. The test
asserts that the measurement is valid (vggbench.cells.problems), not what the science says: that
is the report's job.
"""
from vggbench.cells import problems

ABLATION = "depth"


def test_depth(measured):
    assert problems(measured) == []
