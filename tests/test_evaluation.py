"""Section 3.2's test-time methods (vggbench/evaluation.py): dense evaluation is the plain forward at
the training size, FC -> conv is a reshape, the multi-crop grid, the paper's test scales."""
import dataclasses

import pytest
import torch
from torch import nn

from vggbench.evaluation import METHODS, crop_grid, dense, evaluate_protocol, fc_to_conv, eval_scales
from vggbench.models import build_model


@pytest.mark.parametrize("size,head,kernel", [(224, "paper", 7), (32, "linear", 1), (64, "compact", 2)])
def test_dense_evaluation_at_the_training_size_is_the_plain_forward(size, head, kernel):
    torch.manual_seed(0)
    model = build_model(config="A", width=1 / 16, num_classes=10, image_size=size, head=head, init="kaiming").eval()
    net = dense(model).eval()
    first = next(m for m in net if isinstance(m, nn.Conv2d) and m.out_channels == model.classifier[0].out_features)
    assert first.kernel_size == (kernel, kernel)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        scores = net(x)
        assert scores.shape == (2, 10, 1, 1)
        torch.testing.assert_close(scores.flatten(1), model(x), rtol=1e-4, atol=1e-5)
        # a larger image gives a score map, not an error: dense evaluation takes the uncropped image
        assert net(torch.randn(1, 3, size + 64, size + 64)).shape[-1] == 1 + 64 // 32


def test_fc_weights_become_conv_weights_by_a_reshape():
    fc = nn.Linear(8 * 2 * 2, 5)
    conv = fc_to_conv(fc, 8, (2, 2))
    assert torch.equal(conv.weight.flatten(1), fc.weight) and torch.equal(conv.bias, fc.bias)
    assert torch.equal(conv.weight, fc.weight.view(5, 8, 2, 2))
    with pytest.raises(ValueError, match="a linear layer of 32 inputs is not a 8 x 3 x 3 convolution"):
        fc_to_conv(fc, 8, (3, 3))


def test_the_multi_crop_grid_is_5x5_evenly_spaced_from_edge_to_edge():
    grid = crop_grid(41, 32)
    offsets = [0, 2, 4, 7, 9]  # round(i * 9 / 4)
    assert grid == [(t, l) for t in offsets for l in offsets] and len(grid) == 25
    assert crop_grid(256, 224)[-1] == (32, 32) and crop_grid(256, 224)[1] == (0, 8)
    with pytest.raises(ValueError, match="a 224-pixel crop does not fit a 200-pixel image"):
        crop_grid(200, 224)


def test_test_scales_follow_the_paper():
    assert eval_scales(256, 256, 224) == ([256], [224, 256, 288])
    assert eval_scales(384, 384, 224) == ([384], [352, 384, 416])
    assert eval_scales(256, 512, 224) == ([384], [256, 384, 512])
    assert eval_scales(37, 37, 32) == ([37], [32, 37, 42])    # proportional: 32 x 32 / 224 = 4.6 -> 5
    assert eval_scales(37, 73, 32) == ([55], [37, 55, 73])
    assert eval_scales(32, 32, 32) == ([32], [32, 37])        # no Q below the crop


class PositionBlind(nn.Module):
    """Scores from the mean colour only: every crop, scale and flip of an image scores alike."""
    def __init__(self):
        super().__init__()
        self.spec = build_model(config="A", width=1 / 16, num_classes=10, image_size=32, head="linear").spec
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AvgPool2d(32))
        self.classifier = nn.Sequential(nn.Linear(3, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x).mean((2, 3), keepdim=True), 1))


def test_every_method_agrees_on_a_model_that_ignores_position_and_single_scale_is_the_plain_forward():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (24,))
    # uniform-colour images: rescaling and cropping change nothing, so every method is the plain forward
    x = x[:, :, :1, :1].expand(-1, -1, 32, 32).contiguous()
    model = PositionBlind()
    out = evaluate_protocol(model, x, y, (0.5,) * 3, (0.25,) * 3, 32, (37, 73), batch_size=10)
    assert set(out) == set(METHODS)
    with torch.no_grad():
        plain = model((x.float() - 127.5) / 63.75)
    top1 = (plain.argmax(1) == y).float().mean().item() * 100
    top5 = (plain.topk(5, 1).indices == y[:, None]).any(1).float().mean().item() * 100
    for method, r in out.items():
        assert (r["top1"], r["top5"]) == pytest.approx((top1, top5)), method
    assert out["multi_crop"]["views"] == 150 and out["single_scale"]["views"] == 2
    assert out["single_scale"]["scales"] == [55] and out["multi_scale"]["scales"] == [37, 55, 73]
    coarse = evaluate_protocol(model, x, y, (0.5,) * 3, (0.25,) * 3, 32, (37, 73), batch_size=10, grid=2)
    assert coarse["multi_crop"]["views"] == 24 and coarse["multi_crop"]["top1"] == pytest.approx(top1)


def test_the_crop_grid_is_the_profiles_and_in_the_evaluation_cells_identity():
    from vggbench.cells import cells_for
    from vggbench.options import Options
    from vggbench.profiles import PROFILES

    assert {p.crop_grid for name, p in PROFILES.items() if name != "smoke"} == {5}  # the paper's 5 x 5
    cells = [c for c in cells_for("evaluation", Options()) if "multi_crop" in c.evaluate]
    assert {c.config()["crop_grid"] for c in cells} == {2}  # smoke: 2 x 2
    assert all("crop_grid" not in c.config() for c in cells_for("evaluation", Options()) if c not in cells)  # dense only
    assert {c.crop_grid for c in cells_for("scale", Options())} == {2}
    assert all("crop_grid" not in c.config() for c in cells_for("scale", Options()))  # single scale: no crops
    five = [dataclasses.replace(c, crop_grid=5) for c in cells]
    assert all(a.id != b.id for a, b in zip(cells, five))


def test_a_real_net_at_the_training_scale_single_scale_is_the_flip_averaged_plain_forward():
    torch.manual_seed(1)
    model = build_model(config="A", width=1 / 16, num_classes=10, image_size=32, head="linear").eval()
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    out = evaluate_protocol(model, x, y, (0.5,) * 3, (0.25,) * 3, 32, (32, 32), methods=("single_scale",))
    with torch.no_grad():
        v = (x.float() - 127.5) / 63.75
        p = (model(v).softmax(1) + model(v.flip(-1)).softmax(1)) / 2
    assert out["single_scale"]["top1"] == pytest.approx((p.argmax(1) == y).float().mean().item() * 100)
    assert model.training is False


def test_an_unknown_method_is_one_clear_error():
    model = build_model(config="A", width=1 / 16, num_classes=10, image_size=32, head="linear")
    with pytest.raises(ValueError, match="unknown evaluation method 'tencrop': choose from single_scale, "):
        evaluate_protocol(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, dtype=torch.long),
                          (0.5,) * 3, (0.25,) * 3, 32, (32, 32), methods=("tencrop",))
