"""The table of datasets: one name, one loader each. The CLI's and pytest's help read it.

"synthetic" is the embedded default (generated in memory, see synthetic.py). The real datasets
(cifar10, cifar100, tiny-imagenet, imagenet, imagefolder) are read by sources.py: decoded once,
cached on disk, memory-mapped.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
from typing import Callable

import torch

from . import sources, synthetic
from .spec import DataError, DataSpec, ImageData, apply_subsets, channel_stats

Loader = Callable[[DataSpec], ImageData]


SYNTHETIC_SIZES = {"train": 5000, "val": 1000, "test": 2000}


def _synthetic_fingerprint(image_size: int) -> str:
    """The embedded set's identity without generating it (6.6 s for the scale ablation's 73-pixel
    copy, in every process that collected the grid): what determines its pixels, i.e. the generator
    (its source, glyphs included), the split sizes and seeds, the image size, and torch's version
    (its RNG and resampling draw the images)."""
    what = {"generator": inspect.getsource(synthetic), "sizes": SYNTHETIC_SIZES, "image_size": image_size,
            "torch": torch.__version__.split("+")[0]}
    return "synthetic-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _synthetic(spec: DataSpec) -> ImageData:
    splits = {k: synthetic.generate(n, spec.image_size, seed=i) for i, (k, n) in enumerate(SYNTHETIC_SIZES.items())}
    mean, std = channel_stats(splits["train"][0])
    origin = "generated in memory (vggbench.synthetic)"
    return ImageData("synthetic", list(synthetic.CLASSES), *splits["train"], *splits["val"], *splits["test"],
                     mean=mean, std=std, source=origin, origin=origin,
                     fingerprint=_synthetic_fingerprint(spec.image_size))


DATASETS: dict[str, Loader] = {"synthetic": _synthetic, **{name: sources.load for name in sources.KNOWN}}


def resident_bytes(spec: DataSpec) -> int:
    """A lower bound on the memory loading the spec's data takes: the synthetic set is made in memory
    (float32 while it is drawn, uint8 kept); a real dataset is memory-mapped from its cache (0)."""
    if spec.dataset != "synthetic":
        return 0
    pixels = 3 * spec.image_size ** 2
    return sum(SYNTHETIC_SIZES.values()) * pixels + 4 * max(SYNTHETIC_SIZES.values()) * pixels


def load_data(spec: DataSpec) -> ImageData:
    """The decoded dataset for a spec (memoised per process: cells of one session share it)."""
    # data_dir / cache_dir / skip_bad / verify_data are not part of a spec's equality: key the memo on them too.
    return _load_data(spec, spec.data_dir, spec.cache_dir, spec.skip_bad, spec.verify_data)


def fingerprint(spec: DataSpec) -> str:
    """The identity of a spec's data, as load_data(spec).fingerprint: derived without generating for
    the embedded set; read from the decoded data (cached on disk) for every other."""
    if spec.dataset == "synthetic":
        return _synthetic_fingerprint(spec.image_size)
    return load_data(spec).fingerprint


@functools.lru_cache(maxsize=4)
def _load_data(spec: DataSpec, *where) -> ImageData:
    if spec.dataset not in DATASETS:
        raise DataError(f"unknown dataset {spec.dataset!r}: choose one of {', '.join(sorted(DATASETS))}")
    return apply_subsets(DATASETS[spec.dataset](spec), spec)


