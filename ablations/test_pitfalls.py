"""Pitfalls of VGG write-ups, measured beside their corrections on D: a ReLU after the last linear layer
(with SGD, with Adagrad), and, read from each run's per-epoch history, the epoch chosen on test and
"validation" on the training set. Cases: vggbench.grid.ABLATIONS["pitfalls"]."""
from vggbench.run import problems

ABLATION = "pitfalls"


def test_pitfalls(measured):
    assert problems(measured) == []  # a valid measurement (a stall is a result); the science is the report's
