"""Kernel size: stacks of 3x3 convolutions vs one large kernel of equal receptive field, on B and D (paper section 4.1). Cases: vggbench.grid.ABLATIONS["kernel"]."""
from vggbench.run import problems

ABLATION = "kernel"


def test_kernel(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
