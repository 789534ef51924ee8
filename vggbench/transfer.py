"""Transfer modes: which layers of a pretrained VGG train, and at what learning rate.

  scratch   no pretrained weights: every layer trains from its random init (the control)
  finetune  start from the pretrained weights, every layer trains; the pretrained layers at
            TrainSpec.pretrained_lr_scale x the learning rate (1: one rate for all)
  frozen    the convolutional features are frozen; the head trains (its first two layers start
            pretrained, the last is new)
  linear    only the new last layer trains (a linear probe on the pretrained 4096-d features)

Frozen parameters have requires_grad=False: they are left out of the optimiser and of the
trainable-params count, and the BatchNorm layers among them stay in eval mode while the rest of
the model trains, so their running statistics stay those of the pretrained weights.
"""
from __future__ import annotations

from torch import nn

MODES = ("scratch", "finetune", "frozen", "linear")


def trained_part(model: nn.Module, mode: str) -> nn.Module:
    """The submodule whose parameters train in `mode` (VGG: features + classifier)."""
    if mode in ("scratch", "finetune"):
        return model
    if mode == "frozen":
        return model.classifier
    if mode == "linear":
        return model.classifier[-1]
    raise ValueError(f"unknown transfer mode {mode!r}: choose one of {', '.join(MODES)}")


def freeze(model: nn.Module, mode: str) -> nn.Module:
    """Set requires_grad for `mode`: only trained_part(model, mode) trains."""
    trained = {id(p) for p in trained_part(model, mode).parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    return model


def lr_groups(model: nn.Module, mode: str, pretrained_lr_scale: float) -> list[tuple[list[nn.Parameter], float]]:
    """The trainable parameters as (parameters, learning-rate multiplier) groups: the new last layer
    (every layer in "scratch") at 1, the trainable pretrained layers at pretrained_lr_scale."""
    params = [p for p in model.parameters() if p.requires_grad]
    if mode == "scratch":
        return [(params, 1.0)]
    new = {id(p) for p in model.classifier[-1].parameters()}
    groups = [([p for p in params if id(p) in new], 1.0), ([p for p in params if id(p) not in new], pretrained_lr_scale)]
    return [g for g in groups if g[0]]


def train_mode(model: nn.Module) -> nn.Module:
    """model.train(), except BatchNorm layers whose parameters are frozen: they stay in eval mode
    (their running statistics are not updated, their outputs use the pretrained statistics)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()
    return model
