"""The user's options of a run: what they chose on the command line, over a profile's baseline."""
from __future__ import annotations

from dataclasses import dataclass

from .data import load_data
from .profiles import PROFILES, Profile


@dataclass(frozen=True)
class Options:
    """What the user chose on the command line; None means "the profile's value"."""
    profile: str = "smoke"
    seeds: int = 1
    device: str = "auto"
    epochs: int | None = None
    width: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    skip_bad: bool = False
    compile: bool = False
    dataset: str | None = None

    def baseline(self) -> Profile:
        p = PROFILES[self.profile]
        data = p.data.replace(**{k: v for k, v in dict(
            dataset=self.dataset, image_size=self.image_size, train_subset=self.train_subset,
            test_subset=self.test_subset, data_dir=self.data_dir, cache_dir=self.cache_dir).items() if v is not None},
            skip_bad=self.skip_bad)
        model = p.model.replace(**_given(width=self.width, image_size=self.image_size))
        if data.dataset != p.data.dataset:
            # Another dataset than the profile's (e.g. --dataset imagefolder --data-dir flowers/):
            # the class count comes from the data itself (decoded once, cached).
            model = model.replace(num_classes=load_data(data).num_classes)
        train_ = p.train.replace(**_given(epochs=self.epochs, batch_size=self.batch_size), compile=self.compile)
        return p.replace(data=data, model=model, train=train_)


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}
