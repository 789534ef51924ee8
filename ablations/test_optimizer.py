"""Optimiser: SGD with momentum vs Adam vs Adagrad, each at its own learning rate, on D.

The cases are data in vggbench.grid.ABLATIONS["optimizer"]; each runs as one cell per seed. The test
asserts that the measurement is valid (vggbench.cells.problems), not what the science says: that
is the report's job.
"""
from vggbench.cells import problems

ABLATION = "optimizer"


def test_optimizer(measured):
    assert problems(measured) == []
