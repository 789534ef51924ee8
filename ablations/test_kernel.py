"""Kernel size: stacks of 3x3 convolutions vs one large kernel of equal receptive field, on B and D (paper section 4.1).

The cases are data in vggbench.grid.ABLATIONS["kernel"]; each runs as one cell per seed. The test
asserts that the measurement is valid (vggbench.cells.problems), not what the science says: that
is the report's job.
"""
from vggbench.cells import problems

ABLATION = "kernel"


def test_kernel(measured):
    assert problems(measured) == []
