"""Figures drawn from data and weights rather than records: sample training images of a setting's
dataset and the feature maps of a trained model."""
from __future__ import annotations

from pathlib import Path

import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import records
from ..data import DataSpec
from ..models import DEPTHS, ModelSpec
from ..statuses import Status
from .blocks import Block, heading, image_block, paragraph
from .plots import new_figure, save_figure, style
from .settings import Setting
from .text import number, rel


def load_setting_data(s: Setting, data_dir: str | None, cache_dir: str | None = None):
    """The setting's dataset, or the reason it cannot be loaded (the reason without local paths)."""
    from ..data import load_data
    ident = s.first["config"]["data"]
    try:
        return load_data(DataSpec(**ident, data_dir=data_dir, cache_dir=cache_dir)), None
    except Exception as err:  # any loader failure: the report says so instead of failing
        return None, f"{type(err).__name__}: {err}"


def _mosaic(tiles: list[list], size: int, pad: int = 2):
    """Rows of H x W x 3 float images in [0, 1] -> one padded mosaic (nearest-neighbour resized)."""
    import torch
    import torch.nn.functional as F

    ncols = max(len(r) for r in tiles)
    out = torch.ones(len(tiles) * (size + pad) + pad, ncols * (size + pad) + pad, 3)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            t = torch.as_tensor(tile, dtype=torch.float32).permute(2, 0, 1)[None]
            t = F.interpolate(t, size=(size, size), mode="nearest")[0].permute(1, 2, 0)
            y, x = pad + i * (size + pad), pad + j * (size + pad)
            out[y:y + size, x:x + size] = t
    return out.numpy()


def _row_labels(ax, labels: list[str], size: int, pad: int = 2) -> None:
    ax.set_yticks([pad + i * (size + pad) + size / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def section_samples(s: Setting, data, why: str | None, figdir: Path, per_class: int = 8,
                    max_classes: int = 10) -> list[Block]:
    blocks = [heading(3, "Sample training images")]
    if data is None:
        return blocks + [paragraph(f"The dataset could not be loaded here ({why}); no sample grid drawn. "
                           "`vggbench report --data-dir DIR` points at a local copy.")]
    classes = list(range(min(max_classes, data.num_classes)))
    rows = [[data.train_x[i].permute(1, 2, 0).float().numpy() / 255
             for i in (data.train_y == c).nonzero().flatten()[:per_class].tolist()] for c in classes]
    size = max(32, data.image_size)
    with style(), sns.axes_style({"axes.grid": False}):
        fig, ax = new_figure(size=(0.75 * per_class + 1.2, 0.75 * len(classes) + 0.3))
        ax[0, 0].imshow(_mosaic(rows, size), interpolation="nearest")
        _row_labels(ax[0, 0], [data.classes[c] for c in classes], size)
        path = save_figure(fig, figdir / f"s{s.index}-samples.png")
    shown = (f"the first {len(classes)} of {data.num_classes} classes" if len(classes) < data.num_classes
             else "every class")
    return blocks + [image_block(path, f"{data.name}: {per_class} training images per class, {shown}, "
                                       f"one class per row ({data.source})")]


def _feature_record(s: Setting, results_dir: Path) -> dict | None:
    """The record whose saved weights draw the feature maps: D (VGG-16) of the depth ablation if
    it has weights, else the deepest plain 3x3 model with weights, preferring runs that trained."""
    have = [r for r in s.records if records.weights_path(results_dir, r["cell_id"]).is_file()]
    if not have:
        return None

    def rank(r):
        m = r["config"]["model"]
        return (r.get("status") == Status.OK, m["config"] == "D" and m["kernels"] == "3x3" and not m["batch_norm"],
                m["kernels"] == "3x3", DEPTHS.get(m["config"], 0), -r["config"]["seed"])
    return max(have, key=rank)


def trained_model(record: dict, weights: Path):
    """The record's model with its saved final weights, on the CPU, in eval mode."""
    from ..models import load_trained

    return load_trained(ModelSpec(**record["config"]["model"]), weights).eval()


def normalised_images(images, mean, std):
    """uint8 N x 3 x H x W -> the float input the model was trained on (the loader's normalisation)."""
    import torch
    return (images.float() - torch.tensor(mean).view(1, 3, 1, 1) * 255) / (torch.tensor(std).view(1, 3, 1, 1) * 255)


def feature_maps(record: dict, weights: Path, image, mean, std, channels: int = 6):
    """Per conv layer (after its ReLU): name, shape and the `channels` most active maps for one image."""
    import torch
    from torch import nn

    model = trained_model(record, weights)
    taps, names, block, conv = [], [], 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv} {m.kernel_size[0]}x{m.kernel_size[1]}")
        elif isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda _m, _i, out: taps.append(out.detach().clone()))
        elif isinstance(m, nn.MaxPool2d):
            block, conv = block + 1, 0
    x = normalised_images(image[None], mean, std)
    if x.shape[-1] != model.spec.image_size:  # data cached larger for a training scale: the whole image at the model's size
        x = torch.nn.functional.interpolate(x, size=model.spec.image_size, mode="bilinear", antialias=True)
    with torch.no_grad():
        model(x)
    out = []
    for name, t in zip(names, taps):
        t = t[0]
        top = t.mean((1, 2)).argsort(descending=True)[:channels]
        out.append((name, tuple(t.shape), [t[c].numpy() for c in top.tolist()]))
    return out


def section_feature_maps(s: Setting, data, why: str | None, results_dir: Path, out: Path,
                         figdir: Path) -> list[Block]:
    blocks = [heading(3, "Feature maps of a trained model")]
    rec = _feature_record(s, results_dir)
    if rec is None:
        return blocks + [paragraph(f"No saved weights under `{rel(records.Results(results_dir).weights_dir, out)}/` for this "
                                   "setting's cells (weights are kept for models up to 20M parameters), so no "
                                   "feature maps are drawn.")]
    if data is None:
        return blocks + [paragraph(f"Weights exist (cell {rec['cell_id']}) but the dataset could not be loaded "
                                   f"({why}), so there is no image to run through the model.")]
    from matplotlib import colormaps

    weights = records.weights_path(results_dir, rec["cell_id"])
    image, label = data.test_x[0], int(data.test_y[0])
    layers = feature_maps(rec, weights, image, data.mean, data.std)
    cmap = colormaps["viridis"]

    def colour(fmap):
        lo, hi = float(fmap.min()), float(fmap.max())
        return cmap((fmap - lo) / (hi - lo) if hi > lo else fmap * 0)[..., :3]

    size = max(32, data.image_size)
    mosaic = _mosaic([[colour(f) for f in maps] for _, _, maps in layers], size)
    with style(), sns.axes_style({"axes.grid": False}):
        n = len(layers[0][2])
        fig = Figure(figsize=(1.4 + 0.62 * n + 1.8, 0.6 * len(layers) + 0.6), layout="constrained")
        FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 0.62 * n + 1.8]})
        left.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        left.set_title(f"input: {data.classes[label]}", fontsize=8)
        left.axis("off")
        left.set_anchor("N")
        right.imshow(mosaic, interpolation="nearest")
        _row_labels(right, [f"{name}  {shape[0]}ch {shape[1]}x{shape[2]}" for name, shape, _ in layers], size)
        right.set_title(f"{n} most active channels per conv layer (after ReLU)", fontsize=8)
        path = save_figure(fig, figdir / f"s{s.index}-feature-maps.png")
    m = rec["config"]["model"]
    return blocks + [
        paragraph(f"Model: cell `{rec['cell_id']}` ({ModelSpec(**m).name}, init {m['init']}, "
          f"optimizer {rec['config']['train']['optimizer']}, seed {rec['config']['seed']}, "
          f"status {rec.get('status')}, test top-1 {number(rec.get('result', {}).get('test', {}).get('top1')):.1f}%), "
          f"weights `{rel(weights, out)}`. Each row is one conv layer after its ReLU: the {len(layers[0][2])} "
          "channels with the highest mean activation for the first test image, each scaled to its own range."),
        image_block(path, f"feature maps of {ModelSpec(**m).name} for one {data.name} test image")]
