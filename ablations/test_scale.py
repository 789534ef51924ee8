"""Training scale (paper Table 3): fixed S = 256, S = 384 started from S = 256 at a tenth of the rate, and
scale jittering S in [256, 512], on C, D and E, each tested at one scale Q densely (section 3.2); on
small images the scales are proportional (profiles.Profile.scale_px). Cases: vggbench.grid.ABLATIONS["scale"]."""
from vggbench.run import problems

ABLATION = "scale"


def test_scale(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
