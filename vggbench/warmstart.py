"""Starting a net from another trained one: the paper's two warm starts (section 3.1).

1. From net A ("from-A"). The paper trained the shallow configuration A from a random init, then
   "when training deeper architectures, we initialised the first four convolutional layers and the
   last three fully-connected layers with the layers of net A (the intermediate layers were
   initialised randomly)", without lowering their learning rate. A's convolutions are conv1_1,
   conv2_1, conv3_1, conv3_2, conv4_1, conv4_2, conv5_1, conv5_2; its "first four" are conv1_1,
   conv2_1, conv3_1, conv3_2. Only a by-name mapping onto the deeper net's layers of the same names
   has matching shapes everywhere (B-E's second layer, conv1_2, takes 64 channels, A's conv2_1 takes
   64 and gives 128), so that is the reading used here: conv1_1, conv2_1, conv3_1, conv3_2 and
   fc6, fc7, fc8 of A go to the layers of the same names. With a one-layer head ("linear") the
   "last three" are its one layer.
2. From the S = 256 net ("all"): "to speed-up training of the S = 384 network, it was initialised
   with the weights pre-trained with S = 256, and we used a smaller initial learning rate of 10^-3"
   (a tenth of the paper's 10^-2): every layer is copied.

Layer names are the paper's (Caffe's) block_index: conv3_2 is the second convolution of the third
block; fc6, fc7, fc8 the head's layers, the last one always fc8.
"""
from __future__ import annotations

import torch
from torch import nn

from .models import VGG, ModelSpec

FROM_A = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")
LAYER_SETS = {"from-A": FROM_A, "all": None}  # None: every layer


def layer_names(model: nn.Module) -> dict[str, tuple[nn.Module, ...]]:
    """The paper's name of every weight layer of a VGG -> (the layer, its BatchNorm if any)."""
    names, block, index = {}, 1, 0
    mods = list(model.features)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            index += 1
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            names[f"conv{block}_{index}"] = (m,) if bn is None else (m, bn)
        elif isinstance(m, nn.MaxPool2d):
            block, index = block + 1, 0
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for name, m in zip(("fc6", "fc7", "fc8")[3 - len(fcs):], fcs):
        names[name] = (m,)
    return names


def _shape(layer: nn.Module) -> str:
    w = layer.weight.shape
    return f"a {w[2]}x{w[3]} conv {w[1]}->{w[0]}" if len(w) == 4 else f"a linear layer {w[1]}->{w[0]}"


def check_copy(model: ModelSpec, source: ModelSpec, layers: str) -> None:
    """copy_layers' ValueError, from the specs alone (the nets built on the meta device: nothing
    allocated or trained): whether a net of `model` can start from a trained net of `source`."""
    with torch.device("meta"):
        copy_layers(VGG(model, initialise=False), VGG(source, initialise=False), layers, dry=True)


def copy_layers(model: nn.Module, source: nn.Module, layers: str, dry: bool = False) -> list[str]:
    """Copy the named layers (LAYER_SETS[layers]) of a trained `source` net into `model`, in place;
    returns the names copied. Every named layer must exist in both with the same shapes: a mismatch
    is a ValueError naming the layer and both its shapes (never a silent partial copy). dry: check only."""
    if layers not in LAYER_SETS:
        raise ValueError(f"unknown layer set {layers!r}: choose one of {', '.join(LAYER_SETS)}")
    ours, theirs = layer_names(model), layer_names(source)
    wanted = LAYER_SETS[layers]
    wanted = [n for n in ours if n in theirs] if wanted is None else [n for n in wanted if n in ours or n in theirs]
    if LAYER_SETS[layers] is None and list(ours) != list(theirs):
        raise ValueError(f"cannot copy every layer: the nets differ ({len(ours)} vs {len(theirs)} weight layers)")
    with torch.no_grad():
        for name in wanted:
            if name not in ours or name not in theirs:
                raise ValueError(f"layer {name} is missing from the {'target' if name not in ours else 'source'} net")
            for mine, other in zip(ours[name], theirs[name]):
                mine_state, other_state = mine.state_dict(), other.state_dict()
                if {k: v.shape for k, v in mine_state.items()} != {k: v.shape for k, v in other_state.items()}:
                    raise ValueError(f"layer {name} is {_shape(mine)} here but {_shape(other)} in the net it "
                                     "starts from")
                if not dry:
                    mine.load_state_dict(other_state)
    return wanted
