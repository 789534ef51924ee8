"""Initialisation without batch norm: the paper's normal init (std 0.01) vs Xavier vs Kaiming, on D and E. Cases: vggbench.grid.ABLATIONS["init"]."""
from vggbench.run import problems

ABLATION = "init"


def test_init(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
