"""The paper's test-time protocol (section 3.2; Tables 3-5): one trained net evaluated several ways.

- Test scale Q. The test image is rescaled so that its side is Q: Q = S for a net trained at a
  fixed S, Q = (Smin + Smax) / 2 for a jittered one (Table 3). Several scales (Table 4): {S - 32,
  S, S + 32}, or {Smin, (Smin + Smax) / 2, Smax}; the class posteriors are averaged over them.
  Below the paper's 224 crop every scale is proportional (the 32 becomes 32 x crop / 224).
- Dense evaluation. "The fully-connected layers are first converted to convolutional layers (the
  first FC layer to a 7 x 7 conv. layer, the last two FC layers to 1 x 1 conv. layers). The
  resulting fully-convolutional net is then applied to the whole (uncropped) image", giving a class
  score map that "is spatially averaged (sum-pooled)"; the soft-max is averaged with that of the
  horizontally flipped image. Here the first FC layer's kernel is the final feature map of the
  training size (7 x 7 at 224, 1 x 1 at 32) and its weights a reshape of the FC weights, so at the
  training size the dense net *is* the plain forward (tests/test_evaluation.py checks it).
- Multi-crop. Crops of the training size on a regular 5 x 5 grid with their mirrors, 50 crops per
  scale, run through the plain net, soft-max averaged. (A profile may use a coarser grid where the
  50 crops would cost more than the training they evaluate: the smoke profile's 2 x 2.)
- Both. The soft-max outputs of dense (several scales) and multi-crop averaged: the two complement
  each other (Table 5), the paper's explanation being the different treatment of convolution
  boundaries.

Everything is batched on the device (an image at one scale is one F.interpolate of the batch; the
crops are strided views); no per-image Python runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import VGG

METHODS = ("single_scale", "multi_scale", "multi_crop", "dense_multi_crop")
GRID = 5  # 5 x 5 crops per scale, each with its mirror: 50 views


def fc_to_conv(linear: nn.Linear, in_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """The convolution that computes `linear` at every position: its weight a reshape (a view in
    channel-major order, as torch.flatten lays out a C x h x w map) of the FC weight, the same bias."""
    if linear.in_features != in_channels * kernel[0] * kernel[1]:
        raise ValueError(f"a linear layer of {linear.in_features} inputs is not a {in_channels} x {kernel[0]} x "
                         f"{kernel[1]} convolution")
    conv = nn.Conv2d(in_channels, linear.out_features, kernel)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, in_channels, *kernel))
        conv.bias.copy_(linear.bias)
    return conv.to(linear.weight.device, linear.weight.dtype)


def dense(model: VGG) -> nn.Module:
    """The fully-convolutional net of section 3.2: the same features, the head's FC layers as
    convolutions (the first with the training-size feature map as kernel, the others 1 x 1), its
    ReLU and dropout kept. Output: a class score map N x classes x h' x w'."""
    size = model.spec.image_size // 32  # five 2 x 2 pools
    channels = next(m for m in reversed(model.features) if isinstance(m, nn.Conv2d)).out_channels
    head, first = [], True
    for m in model.classifier:
        if isinstance(m, nn.Linear):
            head.append(fc_to_conv(m, channels, (size, size)) if first else fc_to_conv(m, m.in_features, (1, 1)))
            first = False
        else:
            head.append(m)
    return nn.Sequential(model.features, *head)


def eval_scales(s_min: int, s_max: int, crop: int) -> tuple[list[int], list[int]]:
    """(the single-scale Q, the multi-scale Qs) in pixels by the paper's rules for a net trained at
    S in [s_min, s_max] (s_min == s_max: a fixed S), no Q below the crop."""
    if s_min > s_max:
        raise ValueError(f"training scale ({s_min}, {s_max}): give (Smin, Smax) with Smin <= Smax")
    mid = (s_min + s_max) // 2
    if s_min == s_max:
        d = max(1, round(32 * crop / 224))
        many = [s_min - d, s_min, s_min + d]
    else:
        many = [s_min, mid, s_max]
    return [max(crop, mid)], sorted({max(crop, q) for q in many})


def crop_grid(size: int, crop: int, n: int = GRID) -> list[tuple[int, int]]:
    """(top, left) of the n x n regular grid of crop x crop windows of a size x size image: evenly
    spaced offsets from 0 to size - crop, rounded to pixels."""
    if crop > size:
        raise ValueError(f"a {crop}-pixel crop does not fit a {size}-pixel image: give a test scale >= the crop")
    offsets = [round(i * (size - crop) / (n - 1)) for i in range(n)] if n > 1 else [(size - crop) // 2]
    return [(top, left) for top in offsets for left in offsets]


def _at_scale(x: torch.Tensor, q: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float, rescaled to q x q (bilinear, antialiased when shrinking), normalised."""
    x = x.float()
    if x.shape[-1] != q:
        x = F.interpolate(x, size=(q, q), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean) / std


def _dense_probs(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Soft-max of the spatially averaged class score map, averaged with the mirrored image's."""
    probs = [net(v).float().mean((2, 3)).softmax(1) for v in (x, x.flip(-1))]
    return (probs[0] + probs[1]) / 2


def _crop_probs(model: nn.Module, x: torch.Tensor, crop: int, grid: int = GRID) -> torch.Tensor:
    """Soft-max averaged over the 2 x grid x grid views: every crop of the grid and its mirror.
    One view of the batch a forward pass: batching the views (up to a batch of 224-pixel crops'
    pixels a pass) was slower on a 2-core AMD EPYC, 73-80 s against 46-47 s (smoke's D at S 256-512,
    500 test images, 1 thread, side by side in one process)."""
    total = 0
    for top, left in crop_grid(x.shape[-1], crop, grid):
        view = x[..., top:top + crop, left:left + crop]
        total = total + model(view).float().softmax(1) + model(view.flip(-1)).float().softmax(1)
    return total / (2 * grid * grid)


@torch.no_grad()
def evaluate_protocol(model: VGG, x: torch.Tensor, y: torch.Tensor, mean, std, crop: int,
                      s_range: tuple[int, int], methods=METHODS, batch_size: int = 64,
                      device: torch.device = torch.device("cpu"), amp_dtype=None, grid: int = GRID) -> dict[str, dict]:
    """Top-1 and top-5 (%) of each method on uint8 images x (N x 3 x H x W, the whole stored image)
    with labels y; mean / std per channel in [0, 1] units (as the loader normalises); grid: the
multi-crop grid's side (the paper's 5). Each method's
    entry: {"top1", "top5", "scales": the Qs, "views": forward passes per image}."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown evaluation method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    single, many = eval_scales(*s_range, crop)
    was_training = model.training
    model.eval()
    net = dense(model).eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    hits = {k: torch.zeros(2, dtype=torch.long, device=device) for k in methods}
    try:
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                scaled = {q: _at_scale(xb, q, m, s) for q in (single if methods == ("single_scale",) else many + single)}
                probs = {}
                if "single_scale" in methods:
                    probs["single_scale"] = _dense_probs(net, scaled[single[0]])
                if {"multi_scale", "dense_multi_crop"} & set(methods):
                    probs["multi_scale"] = sum(_dense_probs(net, scaled[q]) for q in many) / len(many)
                if {"multi_crop", "dense_multi_crop"} & set(methods):
                    probs["multi_crop"] = sum(_crop_probs(model, scaled[q], crop, grid) for q in many) / len(many)
                if "dense_multi_crop" in methods:
                    probs["dense_multi_crop"] = (probs["multi_scale"] + probs["multi_crop"]) / 2
            for k in methods:
                top = probs[k].topk(min(5, probs[k].shape[1]), dim=1).indices == yb[:, None]
                hits[k] += torch.stack([top[:, 0].sum(), top.any(1).sum()])
    finally:
        model.train(was_training)
    n = len(y)
    views = {"single_scale": 2, "multi_scale": 2 * len(many), "multi_crop": 2 * grid * grid * len(many),
             "dense_multi_crop": 2 * len(many) + 2 * grid * grid * len(many)}
    scales = {"single_scale": single}
    return {k: {"top1": hits[k][0].item() * 100.0 / n, "top5": hits[k][1].item() * 100.0 / n,
                "scales": scales.get(k, many), "views": views[k]} for k in methods}
