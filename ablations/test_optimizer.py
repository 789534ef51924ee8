"""Optimiser: SGD with momentum vs Adam vs Adagrad, each at its own learning rate, on D. Cases: vggbench.grid.ABLATIONS["optimizer"]."""
from vggbench.run import problems

ABLATION = "optimizer"


def test_optimizer(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
