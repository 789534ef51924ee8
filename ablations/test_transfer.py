"""Transfer learning: ImageNet-pretrained VGG (fine-tuned, features frozen, or a linear probe) vs the same
network from scratch, on D and A. Needs --pretrained torchvision|FILE (skipped without it). Cases:
vggbench.grid.ABLATIONS["transfer"]; modes: vggbench.transfer."""
from vggbench.run import problems

ABLATION = "transfer"


def test_transfer(measured):
    assert problems(measured) == []  # a valid measurement; the science is the report's
