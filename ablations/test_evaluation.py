"""Test-time evaluation (paper Tables 4-5): single- vs multi-scale, dense vs multi-crop vs both, on D and E
trained with scale jittering; every method a result of the one trained net (run.run_evaluation).
Cases: vggbench.grid.ABLATIONS["evaluation"]."""
from vggbench.run import problems

ABLATION = "evaluation"


def test_evaluation(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
    if measured["status"] != "diverged":  # every method, from the one trained net
        assert set(measured["result"]["evaluation"]) == set(measured["config"]["evaluate"])
