"""The embedded default dataset ("synthetic"): generated in memory, deterministic, no files.

Ten classes of glyphs (bars, cross, ring, corners, ...) drawn on a 7x7 grid, each image showing one
glyph placed with a random affine transform (shift, scale, small rotation), random foreground and
background colours, a distractor stroke and pixel noise. The class is a property of the glyph's
*shape*, never of a colour or a pixel position, so a model must combine spatial structure over a
receptive field: per-pixel colour statistics carry no label information, and deeper or larger
receptive fields can matter. A small VGG gets clearly above chance and clearly below 100% in an
epoch or two.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GLYPHS = {  # 7x7 bitmaps; '#' = ink
    "bar-h": [".......", ".......", ".......", "#######", ".......", ".......", "......."],
    "bar-v": ["...#...", "...#...", "...#...", "...#...", "...#...", "...#...", "...#..."],
    "cross": ["...#...", "...#...", "...#...", "#######", "...#...", "...#...", "...#..."],
    "ring": [".#####.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."],
    "corner": ["#######", "#......", "#......", "#......", "#......", "#......", "#......"],
    "tee": ["#######", "...#...", "...#...", "...#...", "...#...", "...#...", "...#..."],
    "diag": ["#......", ".#.....", "..#....", "...#...", "....#..", ".....#.", "......#"],
    "chevron": ["...#...", "..#.#..", ".#...#.", "#.....#", ".......", ".......", "......."],
    "equals": [".......", "#######", ".......", ".......", ".......", "#######", "......."],
    "dots": ["#.....#", ".......", ".......", "...#...", ".......", ".......", "#.....#"],
}
CLASSES = list(GLYPHS)


def _glyph_bank() -> torch.Tensor:
    return torch.tensor([[[c == "#" for c in row] for row in g] for g in GLYPHS.values()],
                        dtype=torch.float32).unsqueeze(1)  # 10x1x7x7


def generate(n: int, image_size: int = 32, seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (uint8, n x 3 x S x S) and balanced labels (int64), fully determined by the seed."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(GLYPHS)
    labels = labels[torch.randperm(n, generator=g)]
    bank = _glyph_bank()

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    # Affine map from output to glyph coordinates: scale 0.45-0.8 of the image, rotation +-20 deg,
    # shift so the glyph stays mostly inside the frame.
    scale = 0.45 + 0.35 * rand(n)
    angle = (rand(n) - 0.5) * (math.radians(40))
    shift = (rand(n, 2) - 0.5) * 2 * (1 - scale).unsqueeze(1) * 0.9
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, -(cos * shift[:, 0] - sin * shift[:, 1])], 1),
                         torch.stack([sin, cos, -(sin * shift[:, 0] + cos * shift[:, 1])], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, image_size, image_size), align_corners=False)
    mask = F.grid_sample(bank[labels], grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # A distractor: a short random stroke (not a glyph) so that "any ink" is not the answer.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
    p0, d = rand(n, 2) * 2 - 1, rand(n, 2) - 0.5
    t = ((xx - p0[:, 0, None, None]) * d[:, 0, None, None] + (yy - p0[:, 1, None, None]) * d[:, 1, None, None])
    t = (t / (d.pow(2).sum(1)[:, None, None] + 1e-6)).clamp(0, 1)
    dist = ((xx - p0[:, 0, None, None] - t * d[:, 0, None, None]) ** 2
            + (yy - p0[:, 1, None, None] - t * d[:, 1, None, None]) ** 2).sqrt()
    stroke = (dist < 1.5 / image_size).float().unsqueeze(1) * 0.7

    fg, bg = rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    # Keep contrast: push the foreground away from the background.
    fg = torch.where((fg - bg).abs().mean(1, keepdim=True) < 0.3, 1 - bg, fg)
    ink = (mask + stroke).clamp(0, 1)
    img = bg * (1 - ink) + fg * ink + noise * torch.randn(n, 3, image_size, image_size, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), labels
