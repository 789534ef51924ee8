"""Batch norm: with vs without, on A, D and E.

The cases are data in vggbench.grid.ABLATIONS["batchnorm"]; each runs as one cell per seed. The test
asserts that the measurement is valid (vggbench.cells.problems), not what the science says: that
is the report's job.
"""
from vggbench.cells import problems

ABLATION = "batchnorm"


def test_batchnorm(measured):
    assert problems(measured) == []
