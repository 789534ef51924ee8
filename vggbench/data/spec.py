"""The types of a dataset and the split helpers shared by every source.

A `DataSpec` says which data a run uses; an `ImageData` is that data decoded: uint8 N x 3 x H x W
images and int64 labels for the train / val / test splits, the class names and the per-channel
mean/std of the train split. Model selection uses val only; test is reported, never tuned on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import torch

from ..errors import UsageError


class DataError(UsageError):
    """Bad or missing data: the message says what to do."""


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "synthetic"
    image_size: int = 32
    train_subset: int | None = None  # stratified subsets for quick runs
    test_subset: int | None = None
    # A subset of the classes (--classes), names or indices as given; `resolve_classes` makes it the
    # names in the dataset's order, so "0,1,2" and "bird,airplane,automobile" are one data identity.
    classes: tuple[str, ...] | None = None
    # Where the data lives; not part of a run's identity (the same data can sit anywhere).
    data_dir: str | None = field(default=None, compare=False)
    cache_dir: str | None = field(default=None, compare=False)
    skip_bad: bool = field(default=False, compare=False)
    # Decode the source again and compare it with its cache entry (sources.load): not part of the data.
    verify_data: bool = field(default=False, compare=False)
    # The identity of the data's content (ImageData.fingerprint, registry.fingerprint), set by
    # cells.cells_for: two folders with the same class names but other images differ here.
    fingerprint: str | None = field(default=None, compare=False)

    def replace(self, **changes) -> "DataSpec":
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict:
        """What of the data can change a result: its content (fingerprint), the skip-bad setting
        (which images are in it) and the subsets; not where it lies."""
        identity = {"dataset": self.dataset, "image_size": self.image_size, "train_subset": self.train_subset,
                    "test_subset": self.test_subset, "skip_bad": self.skip_bad, "fingerprint": self.fingerprint}
        if self.classes is not None:  # only when given: every cell id of the whole dataset stays as it was
            identity["classes"] = list(self.classes)
        return identity


@dataclass
class ImageData:
    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    source: str = ""        # a sentence for people: where it came from, splits, cache entry
    origin: str = ""        # where it came from: "parquet directory /data/cifar10", "hub owner/name@main"
    fingerprint: str = ""   # content_digest of the whole decoded data set (before subsets); for the
                            # embedded set, a digest of what generates it (registry._synthetic_fingerprint)
    # pixel_pca of train_x, once per data set (colour_pca); init=False: dataclasses.replace (subsets,
    # chosen classes) starts a copy without it, never with another split's
    _pca: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    def colour_pca(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The PCA of the training pixels' RGB values that the colour shift draws on (pixel_pca),
        computed the first time a run asks for it and kept with the data."""
        if self._pca is None:
            self._pca = pixel_pca(self.train_x)
        return self._pca


def content_digest(classes: list[str], splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   chunk: int = 4096) -> str:
    """SHA-256 of the class names and every split's images and labels, in order: the same decoded
    data gives the same digest wherever it lies; other images or labels never do. Chunked, so a
    memory-mapped ImageNet is hashed without being held in RAM."""
    h = hashlib.sha256(json.dumps(classes).encode())
    for name in sorted(splits):
        x, y = splits[name]
        h.update(f"\0{name}:{tuple(x.shape)}:{tuple(y.shape)}\0".encode())
        for i in range(0, len(x), chunk):
            h.update(x[i:i + chunk].contiguous().numpy().data)
        h.update(y.contiguous().numpy().data)
    return h.hexdigest()


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 N x 3 x H x W tensor (chunked, float64)."""
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        c = x[i:i + chunk].to(torch.float64) / 255
        s += c.sum((0, 2, 3))
        s2 += c.pow(2).sum((0, 2, 3))
    n = x.numel() / 3
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def pixel_pca(x: torch.Tensor, images: int = 10_000, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, eigenvectors as columns), largest first, of the 3 x 3 covariance of the RGB values
    in [0, 1] units of the pixels of a uint8 N x 3 x H x W tensor: AlexNet's "PCA on the set of RGB
    pixel values throughout the training set", for its colour shift (loader.colour_shift). At most
    `images` images, spread evenly (an ImageNet-sized set: 10,000 images are billions of pixels)."""
    pick = torch.linspace(0, len(x) - 1, min(len(x), images)).long()
    s = torch.zeros(3, dtype=torch.float64)
    ss = torch.zeros(3, 3, dtype=torch.float64)
    n = 0
    for i in range(0, len(pick), chunk):
        c = x[pick[i:i + chunk]].to(torch.float64).div_(255).transpose(0, 1).reshape(3, -1)  # 3 x pixels
        s += c.sum(1)
        ss += c @ c.T
        n += c.shape[1]
    mean = s / n
    values, vectors = torch.linalg.eigh(ss / n - torch.outer(mean, mean))  # ascending
    return values.flip(0).clamp_min(0).float(), vectors.flip(1).float()


def stratified_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n samples with class proportions kept (largest remainders), fixed by the seed."""
    if n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    quota = counts.double() * n / len(y)
    take = quota.floor().long()
    rest = n - int(take.sum())
    take[torch.argsort(quota - take.double(), descending=True)[:rest]] += 1
    picks = []
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picks)).values


def split_off(y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, taken): a stratified n of y taken out (fixed by the seed), the rest kept.
    How a dataset without a val (or test) split gets one (see sources.plan_splits)."""
    taken = stratified_subset(y, n, seed) if n > 0 else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[taken] = False
    return torch.nonzero(keep).flatten(), taken


def resolve_classes(wanted, classes: list[str], name: str) -> tuple[str, ...]:
    """The class names that `wanted` (names or indices) picks out of `classes`, in the dataset's
    order; DataError (one line, naming the first unknown one and what there is) otherwise."""
    picked = set()
    for w in wanted:
        if w in classes:
            picked.add(classes.index(w))
        elif w.isdigit() and int(w) < len(classes):
            picked.add(int(w))
        else:
            shown = ", ".join(classes[:12]) + (f", ... ({len(classes)} in all)" if len(classes) > 12 else "")
            raise DataError(f"--classes: {name} has no class {w!r}; give names or indices 0..{len(classes) - 1} "
                            f"of: {shown}")
    if len(picked) < 2:
        raise DataError(f"--classes {','.join(wanted)}: names one class of {name}; a classifier needs at least 2")
    return tuple(classes[i] for i in sorted(picked))


def select_classes(data: ImageData, wanted) -> ImageData:
    """Only the images of the chosen classes in every split, labelled 0..k-1 in the dataset's order.
    The splits stay stratified: each class keeps all its images of each (stratified) split."""
    names = resolve_classes(wanted, data.classes, data.name)
    old = torch.tensor([data.classes.index(c) for c in names])
    relabel = torch.full((data.num_classes,), -1, dtype=torch.long)
    relabel[old] = torch.arange(len(old))
    out = dataclasses.replace(data, classes=list(names))
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        keep = torch.nonzero(relabel[y] >= 0).flatten()
        setattr(out, f"{split}_x", x[keep])
        setattr(out, f"{split}_y", relabel[y[keep]])
    out.mean, out.std = channel_stats(out.train_x)  # the subset's own normalisation
    return out


def apply_subsets(data: ImageData, spec: DataSpec) -> ImageData:
    if spec.classes is not None:
        data = select_classes(data, spec.classes)
    for flag, n, y in (("--train-subset", spec.train_subset, data.train_y), ("--test-subset", spec.test_subset, data.test_y)):
        if n and n > len(y):
            raise DataError(f"{flag} {n} is larger than the {len(y)} {flag[2:-7]} images of {data.name}: "
                            f"give at most {len(y)}, or drop {flag}")
        if n and n < data.num_classes:
            raise DataError(f"{flag} {n} is smaller than the {data.num_classes} classes of {data.name}: "
                            f"give at least {data.num_classes} (one image per class)")
    data = dataclasses.replace(data)
    if spec.train_subset:
        i = stratified_subset(data.train_y, spec.train_subset, seed=1)
        data.train_x, data.train_y = data.train_x[i], data.train_y[i]
    if spec.test_subset:
        i = stratified_subset(data.test_y, spec.test_subset, seed=2)
        data.test_x, data.test_y = data.test_x[i], data.test_y[i]
    return data
