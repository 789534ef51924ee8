"""Batch norm: with vs without, on A, D and E. Cases: vggbench.grid.ABLATIONS["batchnorm"]."""
from vggbench.run import problems

ABLATION = "batchnorm"


def test_batchnorm(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
