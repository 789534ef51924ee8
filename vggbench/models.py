"""The VGG networks of Simonyan & Zisserman (arXiv 1409.1556), Table 1, as data.

A model is described by a `ModelSpec` (plain fields, hashable, serialisable) and built by one
function, `build_model`. The configurations are lists of blocks; a block is a list of convolution
kernel sizes (3 = conv3, 1 = conv1) at one output width, followed by a 2x2 max-pool.

Variant axes (all fields of `ModelSpec`):
  batch_norm  BatchNorm2d after every convolution (not in the paper; torchvision's vgg*_bn).
  kernels     "3x3": the paper's stacks. "large": each block's stack is replaced by ONE conv whose
              receptive field equals the stack's: n 3x3 convs -> one (2n+1)x(2n+1) conv (1x1 convs
              add nothing). B-large is the paper's shallow 5x5 net (section 4.1).
  init        "paper": normal weights of mean 0 and std 0.01, zero biases: the paper's random init as He et al. (2015)
              and common reimplementations read "zero mean and 10^-2 variance" (a standard
              deviation of 0.01); "paper-variance": the words taken literally, variance 10^-2 (a
              standard deviation of 0.1); "xavier": Glorot uniform; "kaiming": He normal for ReLU
              (fan_in); "from-A": the paper's way of training the deeper nets (section 3.1): layers
              copied from a trained net A (warmstart.py), the others at the "paper" init.
  head        "paper": 4096-4096-classes with dropout 0.5; "compact": 512-512-classes;
              "linear": one linear layer. The first linear layer is sized from the real
              flattened feature map (C x H/32 x W/32), not an adaptive pool.
  width       multiplier on every conv width and hidden head width (small-compute runs).
  final_relu  a ReLU after the last linear layer: a mistake of some write-ups, built only for the
              pitfalls ablation (logits that cannot go negative; a unit at 0 passes no gradient).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UsageError

# Table 1 of the paper: per block, the kernel sizes of its convolutions; widths 64..512.
WIDTHS = (64, 128, 256, 512, 512)
CONFIGS: dict[str, list[list[int]]] = {
    "A": [[3], [3], [3, 3], [3, 3], [3, 3]],
    "A-LRN": [[3], [3], [3, 3], [3, 3], [3, 3]],
    "B": [[3, 3], [3, 3], [3, 3], [3, 3], [3, 3]],
    "C": [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]],
    "D": [[3, 3], [3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "E": [[3, 3], [3, 3], [3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 3]],
}
# Weight layers (convs + 3 FC) per configuration, as the paper names them ("VGG-16" = D).
DEPTHS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
KERNEL_PLANS = ("3x3", "large")
INITS = ("paper", "paper-variance", "xavier", "kaiming", "from-A")
# The standard deviation of the normal inits (recorded with every run: the paper's phrase is read two ways).
INIT_STD = {"paper": 0.01, "paper-variance": 0.1, "from-A": 0.01}
HEADS = {"paper": 4096, "compact": 512, "linear": 0}
MAX_WIDTH = 16.0  # beyond it a width is a typo, not an experiment (a width-16 VGG-E has ~5e10 parameters)
# AlexNet's local response normalisation, used by A-LRN after its first convolution.
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


class SpecError(UsageError):
    """A spec field out of range: the message says which and what is allowed."""


@dataclass(frozen=True)
class ModelSpec:
    config: str = "A"
    batch_norm: bool = False
    kernels: str = "3x3"
    init: str = "kaiming"
    head: str = "paper"
    width: float = 1.0
    num_classes: int = 1000
    image_size: int = 224
    dropout: float = 0.5
    # Fields added after records existed are in a cell's identity only when set (IDENTITY_WHEN_SET):
    # the ids of every earlier cell stay valid.
    final_relu: bool = field(default=False, metadata={"identity": "when_set"})

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise SpecError(f"unknown config {self.config!r}: choose one of {', '.join(CONFIGS)}")
        for name, allowed in (("kernels", KERNEL_PLANS), ("init", INITS), ("head", tuple(HEADS))):
            if getattr(self, name) not in allowed:
                raise SpecError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if not (0 < self.width <= MAX_WIDTH and min(channels(w, self.width) for w in WIDTHS) >= 1):
            raise SpecError(f"width {self.width} must be a number > 0 and at most {MAX_WIDTH:g}, and leave at least "
                            "1 channel per layer")
        if self.num_classes < 2:
            raise SpecError(f"num_classes {self.num_classes} must be at least 2")
        if self.image_size < 32 or self.image_size % 32:
            raise SpecError(f"image size {self.image_size} must be a multiple of 32 (five 2x2 pools), at least 32")
        if not 0 <= self.dropout < 1:
            raise SpecError(f"dropout {self.dropout} must be in [0, 1)")

    @property
    def name(self) -> str:
        """Short label, e.g. 'D-bn-large-w0.25'."""
        parts = [self.config]
        if self.batch_norm:
            parts.append("bn")
        if self.kernels != "3x3":
            parts.append(self.kernels)
        if self.width != 1:
            parts.append(f"w{self.width:g}")
        if self.final_relu:
            parts.append("relu-out")
        return "-".join(parts)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


def identity_fields(spec) -> dict:
    """A spec's fields as its cell's identity: every field, except those marked "when_set" while at
    their default (added after records existed; see ModelSpec.final_relu)."""
    skip = {f.name for f in dataclasses.fields(spec)
            if f.metadata.get("identity") == "when_set" and getattr(spec, f.name) == f.default}
    return {k: v for k, v in dataclasses.asdict(spec).items() if k not in skip}


def channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def block_plan(spec: ModelSpec) -> list[tuple[int, list[int]]]:
    """(output width, kernel sizes) per block after applying the kernel plan."""
    plan = []
    for base, kernels in zip(WIDTHS, CONFIGS[spec.config]):
        if spec.kernels == "large":
            # Same receptive field as the stack: each 3x3 grows it by 2, a 1x1 by 0.
            kernels = [1 + sum(k - 1 for k in kernels)]
        plan.append((channels(base, spec.width), list(kernels)))
    return plan


def _features(spec: ModelSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for b, (out_ch, kernels) in enumerate(block_plan(spec)):
        for i, k in enumerate(kernels):
            layers.append(nn.Conv2d(in_ch, out_ch, k, padding=k // 2))
            if spec.batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
            if spec.config == "A-LRN" and b == 0 and i == 0:
                layers.append(nn.LocalResponseNorm(**LRN))
            in_ch = out_ch
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def _head(spec: ModelSpec, in_features: int) -> nn.Sequential:
    hidden = HEADS[spec.head]
    # No ReLU after the last linear layer: logits must be free to go negative (final_relu: the
    # mistake, on purpose, appended last so that the linear layers keep their state-dict keys).
    out = [nn.ReLU()] if spec.final_relu else []
    if hidden == 0:
        return nn.Sequential(nn.Linear(in_features, spec.num_classes), *out)
    hidden = channels(hidden, spec.width)
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(spec.dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(spec.dropout),
        nn.Linear(hidden, spec.num_classes), *out,
    )


class VGG(nn.Module):
    def __init__(self, spec: ModelSpec, initialise: bool = True):
        """initialise=False: the layers' shapes only (a meta-device net checked before anything runs:
        the init's first meta kernels cost 1.4 s, most of collecting the grid)."""
        super().__init__()
        self.spec = spec
        self.features = _features(spec)
        # Size the head from a real forward pass of one dummy image (robust to any plan).
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, spec.image_size, spec.image_size)).numel()
        self.classifier = _head(spec, flat)
        if initialise:
            init_weights(self, spec.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def init_weights(model: nn.Module, scheme: str) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme in INIT_STD:  # from-A: the layers not copied from A keep the paper's random init
                nn.init.normal_(m.weight, 0.0, INIT_STD[scheme])
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                raise SpecError(f"unknown init {scheme!r}: choose one of {', '.join(INITS)}")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec | None = None, **fields) -> VGG:
    """`build_model(ModelSpec(config="D"))` or `build_model(config="D", batch_norm=True)`."""
    spec = spec.replace(**fields) if spec is not None else ModelSpec(**fields)
    return VGG(spec)


def load_trained(spec: ModelSpec, path) -> VGG:
    """A trained net from its kept weights (results/weights/<cell>.pt), on the CPU wherever it was saved from."""
    model = build_model(spec)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def weight_shapes(spec: ModelSpec) -> list[tuple[str, int, int, int]]:
    """Every conv and linear layer from the spec alone, in order: (kind, k x k x in, out, output pixels)."""
    size, in_ch, layers = spec.image_size, 3, []
    for out_ch, kernels in block_plan(spec):
        for k in kernels:
            layers.append(("conv", k * k * in_ch, out_ch, size * size))
            in_ch = out_ch
        size //= 2
    dims = [in_ch * size * size]
    if HEADS[spec.head]:
        dims += [channels(HEADS[spec.head], spec.width)] * 2
    dims.append(spec.num_classes)
    return layers + [("linear", a, b, 1) for a, b in zip(dims, dims[1:])]


def analytic_macs(spec: ModelSpec) -> dict[str, int]:
    """Multiply-adds of conv and linear layers for one image, from the spec alone."""
    macs = {"conv": 0, "linear": 0}
    for kind, fan_in, out, pixels in weight_shapes(spec):
        macs[kind] += fan_in * out * pixels
    return {**macs, "total": macs["conv"] + macs["linear"]}


def activation_values(spec: ModelSpec) -> int:
    """A lower bound on the values one training image keeps for the backward pass, from the spec
    alone: the input and each layer's output, twice per conv (ReLU's too; three times with BN)."""
    per_conv = 3 if spec.batch_norm else 2
    return 3 * spec.image_size ** 2 + sum(out * pixels * (per_conv if kind == "conv" else 1)
                                          for kind, _, out, pixels in weight_shapes(spec))


def analytic_params(spec: ModelSpec) -> int:
    """Parameters (weights, biases, BN scales and shifts) from the spec alone, without building it."""
    return sum(fan_in * out + out + (2 * out if spec.batch_norm and kind == "conv" else 0)
               for kind, fan_in, out, _ in weight_shapes(spec))


def weight_layers(spec: ModelSpec) -> int:
    """Number of conv + linear layers (the paper's depth)."""
    return sum(len(k) for _, k in block_plan(spec)) + (3 if HEADS[spec.head] else 1)


__all__ = ["CONFIGS", "DEPTHS", "INIT_STD", "INITS", "MAX_WIDTH", "ModelSpec", "SpecError", "VGG", "activation_values",
           "analytic_macs", "analytic_params", "block_plan", "build_model", "identity_fields", "init_weights", "load_trained",
           "weight_layers", "weight_shapes"]
