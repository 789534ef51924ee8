"""Pretrained ImageNet weights for vggbench's VGG: torchvision's published ones, or a local file.

A source is "torchvision" (the IMAGENET1K_V1 weights of vgg11/13/16/19 and their _bn variants,
fetched through torchvision's weights API into torch.hub's cache, <torch.hub.get_dir()>/checkpoints/)
or the path of a file in torchvision's state-dict format (`torch.save(tv_model.state_dict(), FILE)`).

The mapping is exact: vggbench builds its features in torchvision's layer order (conv, [bn], relu,
..., pool) and the paper's head is torchvision's classifier, so every key keeps its name
(features.N.*, classifier.0/3/6.*); every key and shape is checked and a mismatch is an error,
never a partial load. Only configurations A, B, D, E with the paper's head at width 1 and 3x3
kernels have published weights (C and A-LRN have none).

Image size: torchvision's VGG average-pools the last feature map to 7x7 (AdaptiveAvgPool2d) before
the classifier; vggbench's sizes its first linear layer from the real map (512 x S/32 x S/32). At
224 the two are the same layer. At any other size (a multiple of 32) that pool is linear, so it is
folded into the first linear layer's weights: the network then computes exactly what torchvision's
model computes at that size (tested at 224 and 64). The weights were trained at 224: other sizes
work, but transfer less well.

Inputs are normalised with the ImageNet mean/std the weights were trained with (`normalization`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError
from .models import VGG, ModelSpec

# Configurations with published ImageNet weights: torchvision's model names.
TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
# What published weights fix about the model (cells_for applies it to the transfer ablation).
ARCHITECTURE = {"head": "paper", "width": 1.0, "kernels": "3x3"}
FEATURE_POOL = 7  # torchvision's AdaptiveAvgPool2d((7, 7))
LAST = "classifier.6."  # the paper head's last layer: replaced for the dataset's classes


class PretrainedError(UsageError):
    """Weights that cannot be used: the message says what to pass instead."""


class Unavailable(PretrainedError):
    """The source has no weights for this model (a cell that needs them is skipped with this reason)."""


@dataclass(frozen=True)
class Weights:
    """The pretrained weights of one cell: what they are (hashed into the cell id) and where they are."""
    source: str        # "torchvision" or "file"
    name: str          # torchvision's enum ("VGG16_Weights.IMAGENET1K_V1") or the file's sha256
    file: str          # torchvision's file name (its hash prefix in the name) or the file's path
    # Where a file sits is not part of the identity: the same weights can be anywhere.
    path: str | None = field(default=None, compare=False)

    def identity(self) -> dict:
        if self.source == "torchvision":
            return {"source": "torchvision", "weights": self.name, "file": self.file}
        return {"source": "file", "sha256": self.name}


def _torchvision_models():
    """torchvision.models, imported on first use: 3-4 s that collecting the grid need not pay."""
    import torchvision.models
    return torchvision.models


def normalization() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ImageNet mean/std of torchvision's VGG weights (from their published transforms)."""
    t = _torchvision_models().VGG16_Weights.IMAGENET1K_V1.transforms()
    return tuple(t.mean), tuple(t.std)


def torchvision_weights(spec: ModelSpec):
    """The torchvision weights enum member for a spec, e.g. VGG16_BN_Weights.IMAGENET1K_V1."""
    if spec.config not in TORCHVISION:
        raise Unavailable(f"torchvision publishes no ImageNet weights for {spec.config}: only A, B, D, E "
                          "(vgg11, vgg13, vgg16, vgg19, with or without _bn)")
    name = TORCHVISION[spec.config] + ("_bn" if spec.batch_norm else "")
    return _torchvision_models().get_model_weights(name).IMAGENET1K_V1


def cache_path(weights) -> Path:
    """Where torchvision keeps (or will download) a weights file: torch.hub's checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def check_source(source: str) -> None:
    """A usable --pretrained value, or PretrainedError saying what to pass."""
    if source == "torchvision":
        return
    path = Path(source).expanduser()
    what = "is a folder, not a file" if path.is_dir() else "no such file" if not path.exists() else None
    if what is not None or not path.is_file():
        raise PretrainedError(f"{source}: {what or 'not a regular file'}; pass torchvision (the published ImageNet "
                              "weights) or a file saved with torch.save(torchvision_vgg.state_dict(), FILE)")


def check_reachable(weights: Weights, timeout: float = 10.0) -> None:
    """Before any cell runs: torchvision's weights are in torch.hub's cache or can be downloaded
    (one HEAD request); a file's were read when its Weights were made (weights_for). Else
    PretrainedError, the same line a cell would end with."""
    if weights.source != "torchvision":
        return
    w = _torchvision_models().get_weight(weights.name)
    if cache_path(w).is_file():
        return
    try:
        urllib.request.urlopen(urllib.request.Request(w.url, method="HEAD"), timeout=timeout).close()
    except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts: not downloadable from here
        raise _unreachable(weights, w, err) from None


def _unreachable(weights: Weights, w, err: BaseException) -> PretrainedError:
    reason = getattr(err, "reason", None) or str(err)[:120]
    return PretrainedError(f"cannot download torchvision's {weights.name} ({w.url}: {reason}); offline? "
                           f"pass a local file with --pretrained FILE, or put {weights.file} into "
                           f"{cache_path(w).parent}")


def weights_for(source: str | None, spec: ModelSpec) -> Weights:
    """The weights `source` has for `spec`; Unavailable if it has none for it (a file of another
    configuration, C or A-LRN, another head or width), PretrainedError if the source is unusable."""
    if source is None:
        raise Unavailable("the transfer ablation needs pretrained weights: pass --pretrained torchvision "
                          "or --pretrained FILE (a torchvision VGG state dict)")
    wrong = {k: getattr(spec, k) for k, v in ARCHITECTURE.items() if getattr(spec, k) != v}
    if wrong:
        raise Unavailable(f"pretrained weights need the paper's head at width 1 with 3x3 kernels, not {wrong}")
    if source == "torchvision":
        w = torchvision_weights(spec)
        return Weights("torchvision", f"{type(w).__name__}.{w.name}", os.path.basename(w.url))
    check_source(source)
    path = Path(source).expanduser().resolve()
    st = path.stat()
    sha256, shapes = _file_info(str(path), st.st_size, st.st_mtime_ns)
    if mismatches(shapes, spec):
        try:
            held = describe(shapes)
        except PretrainedError as err:
            raise PretrainedError(f"{source}: {err}") from None
        raise Unavailable(f"{path.name} holds {held} weights; {spec.name} needs "
                          f"{torchvision_name(spec)} weights (pass --pretrained torchvision or such a file)")
    return Weights("file", sha256, path.name, str(path))


def torchvision_name(spec: ModelSpec) -> str:
    return TORCHVISION.get(spec.config, spec.config) + ("_bn" if spec.batch_norm else "")


def describe(shapes: dict[str, torch.Size]) -> str:
    """Which torchvision VGG a state dict's shapes are, e.g. 'vgg11 (A)'; PretrainedError if none."""
    for config, name in TORCHVISION.items():
        for bn in (False, True):
            if not mismatches(shapes, ModelSpec(config=config, batch_norm=bn, num_classes=2, **ARCHITECTURE)):
                return f"{name}{'_bn' if bn else ''} ({config})"
    spec = ModelSpec(config="D", **ARCHITECTURE)
    raise PretrainedError(f"not a torchvision VGG state dict (e.g. against vgg16: {mismatches(shapes, spec)[0]}); "
                          "save one with torch.save(torchvision_vgg.state_dict(), FILE)")


@functools.lru_cache(maxsize=8)
def _file_info(path: str, size: int, mtime_ns: int) -> tuple[str, dict[str, torch.Size]]:
    """(sha256, key -> shape) of a weights file; memoised on its size and mtime (cells_for runs often)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    sha256 = h.hexdigest()
    state = _read(path, mmap=True)  # shapes only: nothing is read into memory
    return sha256, {k: v.shape for k, v in state.items()}


def _read(path: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # pickle, zip and format errors all mean: not a state dict file
        raise PretrainedError(f"{path}: cannot be read as a state dict ({type(err).__name__}: {str(err)[:120]}); "
                              "save one with torch.save(torchvision_vgg.state_dict(), FILE)") from None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise PretrainedError(f"{path}: not a state dict (a mapping of names to tensors); save one with "
                              "torch.save(torchvision_vgg.state_dict(), FILE)")
    return state


@functools.lru_cache(maxsize=16)
def _expected(spec: ModelSpec) -> dict[str, torch.Size]:
    """vggbench's state-dict shapes for a spec, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return {k: v.shape for k, v in VGG(spec).state_dict().items()}


def mismatches(shapes: dict[str, torch.Size], spec: ModelSpec, new_head: bool = True) -> list[str]:
    """How a torchvision state dict's shapes differ from `spec`'s VGG, as torchvision lays it out:
    the first linear layer takes 512 x 7 x 7 inputs (its pool is folded in at other sizes); with
    new_head the last layer's class count is free (it is replaced)."""
    want = dict(_expected(spec.replace(image_size=224)))
    want = {k: v for k, v in want.items() if not k.endswith("num_batches_tracked")}  # old files lack them
    have = {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    out = [f"missing {k}" for k in want if k not in have] + [f"unexpected {k}" for k in have if k not in want]
    for k in want.keys() & have.keys():
        shape, other = tuple(want[k]), tuple(have[k])
        if new_head and k == LAST + "weight":
            shape, other = shape[1:], other[1:]  # any number of classes
        elif new_head and k == LAST + "bias":
            continue
        if shape != other:
            out.append(f"{k}: {tuple(have[k])} where {spec.name} has {tuple(want[k])}")
    return sorted(out)


def state_dict(weights: Weights, progress: bool = False) -> dict[str, torch.Tensor]:
    """The weights' tensors: torchvision's through its weights API (from torch.hub's cache, else
    downloaded there, hash-checked), or the file's (checked against its sha256)."""
    if weights.source == "torchvision":
        w = _torchvision_models().get_weight(weights.name)
        try:
            return w.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        except (OSError, RuntimeError) as err:  # URLError/HTTPError (offline, proxy) and hash mismatches
            raise _unreachable(weights, w, err) from None
    if weights.path is None or not Path(weights.path).is_file():
        raise PretrainedError(f"the weights file {weights.path or weights.file} is gone; pass --pretrained FILE again")
    st = Path(weights.path).stat()
    sha256 = _file_info(weights.path, st.st_size, st.st_mtime_ns)[0]  # hashed again only if the file changed
    if sha256 != weights.name:
        raise PretrainedError(f"{weights.path} changed since its cells were made (sha256 {sha256[:12]}, "
                              f"not {weights.name[:12]}); run again to make cells of the new file")
    return _read(weights.path)


def fold_pool(weight: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's first linear weight (out, 512*7*7), with its AdaptiveAvgPool2d((7, 7)) folded in
    for a size x size feature map: (out, 512*size*size). The pool is a linear map P (size^2 -> 49)
    per channel, so W . pool(f) = (W P^T) . f exactly."""
    eye = torch.eye(size * size, dtype=torch.float64).view(size * size, 1, size, size)
    pool = nn.functional.adaptive_avg_pool2d(eye, FEATURE_POOL).view(size * size, FEATURE_POOL ** 2)
    w = weight.double().view(weight.shape[0], -1, FEATURE_POOL ** 2)
    return torch.einsum("ocj,ij->oci", w, pool).reshape(weight.shape[0], -1).to(weight.dtype)


def load_into(model: VGG, state: dict[str, torch.Tensor], what: str, new_head: bool = True) -> None:
    """Copy a torchvision VGG state dict into vggbench's `model`, all or nothing. new_head: keep the
    model's own (freshly initialised) last layer, for its dataset's classes."""
    spec = model.spec
    problems = mismatches({k: v.shape for k, v in state.items()}, spec, new_head)
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise PretrainedError(f"{what} does not fit {spec.name}: {'; '.join(problems[:3])}{more}")
    mapped = dict(state)
    size = spec.image_size // 32
    if size != FEATURE_POOL:
        mapped["classifier.0.weight"] = fold_pool(state["classifier.0.weight"], size)
    if new_head:
        mapped.update({k: v for k, v in model.state_dict().items() if k.startswith(LAST)})
    model.load_state_dict(mapped, strict=True)


def load_weights(model: VGG, weights: Weights | None, new_head: bool = True) -> Weights:
    """Load a cell's pretrained weights into its model (the transfer modes' starting point)."""
    if weights is None:
        raise Unavailable("this cell trains from pretrained weights: pass --pretrained torchvision or --pretrained FILE")
    load_into(model, state_dict(weights), f"{weights.source} weights {weights.file}", new_head=new_head)
    return weights


__all__ = ["ARCHITECTURE", "PretrainedError", "TORCHVISION", "Unavailable", "Weights", "cache_path", "check_reachable", "check_source",
           "describe", "fold_pool", "load_into", "load_weights", "mismatches", "normalization", "state_dict",
           "torchvision_weights", "weights_for"]
