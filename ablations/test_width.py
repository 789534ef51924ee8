"""Trial: width of D. Cases: vggbench.grid.ABLATIONS["width"]."""
from vggbench.run import problems

ABLATION = "width"


def test_width(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
