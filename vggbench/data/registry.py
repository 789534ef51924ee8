"""The table of datasets: one name, one loader each. The CLI's and pytest's help read it.

"synthetic" is the embedded default (generated in memory, see synthetic.py). The real datasets
(cifar10, cifar100, tiny-imagenet, imagenet, imagefolder) are read by sources.py: decoded once,
cached on disk, memory-mapped.
"""
from __future__ import annotations

import functools
from typing import Callable

from . import sources, synthetic
from .spec import DataError, DataSpec, ImageData, apply_subsets, channel_stats, content_digest

Loader = Callable[[DataSpec], ImageData]


SYNTHETIC_SIZES = {"train": 5000, "val": 1000, "test": 2000}


def _synthetic(spec: DataSpec) -> ImageData:
    splits = {k: synthetic.generate(n, spec.image_size, seed=i) for i, (k, n) in enumerate(SYNTHETIC_SIZES.items())}
    mean, std = channel_stats(splits["train"][0])
    origin = "generated in memory (vggbench.synthetic)"
    return ImageData("synthetic", list(synthetic.CLASSES), *splits["train"], *splits["val"], *splits["test"],
                     mean=mean, std=std, source=origin, origin=origin,
                     fingerprint=content_digest(list(synthetic.CLASSES), splits))


DATASETS: dict[str, Loader] = {"synthetic": _synthetic, **{name: sources.load for name in sources.KNOWN}}


def load_data(spec: DataSpec) -> ImageData:
    """The decoded dataset for a spec (memoised per process: cells of one session share it)."""
    # data_dir / cache_dir / skip_bad / verify_data are not part of a spec's equality: key the memo on them too.
    return _load_data(spec, spec.data_dir, spec.cache_dir, spec.skip_bad, spec.verify_data)


@functools.lru_cache(maxsize=4)
def _load_data(spec: DataSpec, *where) -> ImageData:
    if spec.dataset not in DATASETS:
        raise DataError(f"unknown dataset {spec.dataset!r}: choose one of {', '.join(sorted(DATASETS))}")
    return apply_subsets(DATASETS[spec.dataset](spec), spec)


