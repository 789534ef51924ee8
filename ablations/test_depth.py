"""Depth (paper Table 3): configurations A, A-LRN, B, C, D, E of Table 1. Cases: vggbench.grid.ABLATIONS["depth"]."""
from vggbench.run import problems

ABLATION = "depth"


def test_depth(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
