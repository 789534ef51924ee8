"""The model builder: Table 1 exactly, every variant axis, shapes at 32/64/224, torchvision parity."""
import pytest
import torch
from torch import nn

from vggbench.models import (CONFIGS, DEPTHS, ModelSpec, SpecError, analytic_macs, analytic_params, block_plan,
                             build_model, weight_layers)
from vggbench.measure import count_flops, count_params

# The numbers (paper settings: 224x224, 1000 classes, head "paper", no BN).
PAPER_PARAMS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952,
                "D": 138_357_544, "E": 143_667_240}
PAPER_GMACS = {"A": 7.609, "B": 11.308, "D": 15.470, "E": 19.632}
TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_paper_parameter_counts(config):
    assert count_params(build_model(config=config))["params"] == PAPER_PARAMS[config]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_analytic_parameter_counts(config):
    """Counted from the spec alone (what `vggbench profile` checks before building a model)."""
    assert analytic_params(ModelSpec(config=config)) == PAPER_PARAMS[config]
    for spec in (ModelSpec(config=config, batch_norm=True, kernels="large", head="compact", width=0.25,
                           image_size=64, num_classes=10), ModelSpec(config=config, head="linear", image_size=32)):
        assert analytic_params(spec) == count_params(build_model(spec))["params"]


@pytest.mark.parametrize("config", list(TORCHVISION))
@pytest.mark.parametrize("bn", [False, True])
def test_same_parameters_as_torchvision(config, bn):
    import torchvision

    name = TORCHVISION[config] + ("_bn" if bn else "")
    ref = getattr(torchvision.models, name)(weights=None)
    ours = build_model(config=config, batch_norm=bn)
    assert count_params(ours)["params"] == sum(p.numel() for p in ref.parameters())
    # Same layer shapes in the same order, not only the same total.
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]


@pytest.mark.parametrize("config", list(PAPER_GMACS))
def test_paper_gmacs(config):
    flops = count_flops(build_model(config=config))
    assert flops["gmacs"] == pytest.approx(PAPER_GMACS[config], abs=0.001)
    assert flops["gflops"] == pytest.approx(2 * flops["gmacs"], rel=1e-6)


def test_config_c_uses_1x1_as_last_conv_of_blocks_3_to_5():
    model = build_model(config="C", width=0.125, image_size=32, num_classes=10)
    kernels = [m.kernel_size[0] for m in model.features if isinstance(m, nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]


def test_a_lrn_has_alexnet_lrn_after_first_conv_only():
    model = build_model(config="A-LRN", width=0.125, image_size=32, num_classes=10)
    lrn = [i for i, m in enumerate(model.features) if isinstance(m, nn.LocalResponseNorm)]
    assert lrn == [2]  # conv, relu, LRN, pool
    m = model.features[2]
    assert (m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 2.0)


@pytest.mark.parametrize("config,expected", [("B", [5, 5, 5, 5, 5]), ("D", [5, 5, 7, 7, 7]),
                                             ("A", [3, 3, 5, 5, 5]), ("C", [5, 5, 5, 5, 5]), ("E", [5, 5, 9, 9, 9])])
def test_large_kernel_plan_keeps_receptive_field(config, expected):
    plan = block_plan(ModelSpec(config=config, kernels="large"))
    assert [k for _, ks in plan for k in ks] == expected
    model = build_model(config=config, kernels="large", width=0.125, image_size=32, num_classes=10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == expected
    assert all(c.padding[0] == c.kernel_size[0] // 2 for c in convs)


def test_depths_match_paper_names():
    for config, depth in DEPTHS.items():
        assert weight_layers(ModelSpec(config=config)) == depth


@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("head", ["paper", "compact", "linear"])
def test_output_shapes(config, size, head):
    model = build_model(config=config, width=0.0625, image_size=size, num_classes=7, head=head).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_head_is_sized_from_real_feature_map(size):
    model = build_model(config="A", image_size=size, num_classes=10, width=0.5)
    first = model.classifier[0]
    assert first.in_features == 256 * (size // 32) ** 2
    assert first.out_features == 2048  # 4096 x width


def test_no_relu_after_last_linear():
    for head in ("paper", "compact", "linear"):
        model = build_model(config="A", head=head, width=0.125, image_size=32, num_classes=10)
        assert isinstance(model.classifier[-1], nn.Linear)


def test_batch_norm_axis():
    model = build_model(config="D", batch_norm=True, width=0.125, image_size=32, num_classes=10)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert convs == bns == 13


def test_width_multiplier_scales_channels():
    model = build_model(config="A", width=0.25, image_size=32, num_classes=10, head="compact")
    assert [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert model.classifier[0].out_features == 128


@pytest.mark.parametrize("init,check", [
    ("paper", lambda w: abs(w.std().item() - 0.01) < 0.002),
    ("xavier", lambda w: w.abs().max().item() <= (6 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5 + 1e-6),
    ("kaiming", lambda w: abs(w.std().item() - (2 / (w.shape[1] * 9)) ** 0.5) < 0.1 * (2 / (w.shape[1] * 9)) ** 0.5),
])
def test_init_schemes(init, check):
    torch.manual_seed(0)
    model = build_model(config="A", init=init, width=0.5, image_size=32, num_classes=10)
    conv = [m for m in model.features if isinstance(m, nn.Conv2d)][3]
    assert check(conv.weight)
    assert torch.count_nonzero(conv.bias) == 0


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = build_model(config="B", width=0.125, image_size=32, num_classes=10)
    torch.manual_seed(3)
    b = build_model(config="B", width=0.125, image_size=32, num_classes=10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("fields,message", [
    (dict(config="F"), "unknown config 'F'"),
    (dict(kernels="5x5"), "unknown kernels '5x5'"),
    (dict(init="orthogonal"), "unknown init 'orthogonal'"),
    (dict(head="big"), "unknown head 'big'"),
    (dict(width=0), "width 0 must be a number > 0"),
    (dict(width=-1), "width -1 must be a number > 0"),
    (dict(image_size=100), "image size 100 must be a multiple of 32"),
    (dict(num_classes=1), "num_classes 1 must be at least 2"),
])
def test_bad_spec_is_a_clear_error(fields, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec(**fields)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kernels", ["3x3", "large"])
def test_analytic_macs_equal_measured(config, kernels):
    spec = ModelSpec(config=config, kernels=kernels, width=0.25, image_size=64, num_classes=10, head="compact")
    flops = count_flops(build_model(spec))
    assert flops["gmacs"] * 1e9 == pytest.approx(analytic_macs(spec)["total"], rel=1e-9)
