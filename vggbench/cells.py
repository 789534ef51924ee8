"""A cell is one complete run: (model spec, training spec, data spec, seed, device kind).

`cells_for` turns an ablation's cases into cells under a profile and the user's options. Running a
cell is run.py's job.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from . import records
from .data import DataSpec, load_data
from .grid import ABLATIONS, Ablation
from .device import gpu_model, resolve_device
from .models import ModelSpec
from .options import Options
from .profiles import PROFILES, Profile
from .pretrained import Unavailable, Weights, weights_for
from .trainer import TrainSpec


@dataclass(frozen=True)
class Cell:
    ablation: str
    case: str
    model: ModelSpec
    train: TrainSpec
    data: DataSpec
    seed: int
    device: str = "auto"
    # throughput: batch, warm-up steps, timed windows, least seconds per window
    bench: tuple[int, int, int, float] = field(default=(32, 1, 3, 0.0), compare=False)
    cpu_threads: int | None = None  # torch threads for a CPU cell (None: the process's)
    # Provenance, outside the hash: the profile and the options the user gave (records.provenance).
    profile: str = field(default="", compare=False)
    overrides: tuple[tuple[str, object], ...] = field(default=(), compare=False)
    weights: Weights | None = None  # pretrained weights it starts from (transfer modes but scratch)
    skip: str | None = field(default=None, compare=False)  # why it cannot run here (pytest skips it)
    # Learning-rate tuning (tuning.py): the rates a final cell is tuned over, a tuning cell's role,
    # and (outside the hash) what the tuning found, for the record.
    tune: tuple[float, ...] = ()
    role: str = "final"
    tuning: dict | None = field(default=None, compare=False)

    @property
    def device_kind(self) -> str:
        return resolve_device(self.device).type

    def config(self) -> dict:
        """The complete configuration: everything that can change the result (hashed)."""
        config = {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train),
                  "data": self.data.identity(), "seed": self.seed, "device": self.device_kind}
        if config["device"] == "cpu":
            config["cpu_threads"] = self.threads  # CPU float results depend on it
        else:  # throughput depends on the GPU model: a record from another model is not this cell's
            config["gpu"] = gpu_model(resolve_device(self.device))
        if self.weights is not None:
            config["pretrained"] = self.weights.identity()  # the file's sha256 or torchvision's name + hash
        if self.tune:
            config["tune_lr"] = list(self.tune)  # a final cell before tuning (its record is under the tuned id)
        if self.role != "final":
            config["role"] = self.role  # a tuning cell: never counted as a seed of its case
        return config

    @property
    def threads(self) -> int:
        return self.cpu_threads or torch.get_num_threads()

    @property
    def id(self) -> str:
        return records.digest(self.config())[:16]

    @property
    def test_id(self) -> str:
        return f"{self.case}-s{self.seed}"


def baseline(options: Options) -> Profile:
    """The profile with the user's options applied (raises ValueError on a bad combination).

    An option given (not None, a switch that is on) replaces the field of the same name in the
    data, model and training specs that have one (`--image-size` sets both the data's and the
    model's): a new option that names a spec field needs no code here."""
    p = PROFILES[options.profile]
    given = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
             if getattr(options, f.name) not in (None, False)}

    def apply(spec):
        names = {f.name for f in dataclasses.fields(spec)}
        return spec.replace(**{k: v for k, v in given.items() if k in names})

    data, model, train_ = apply(p.data), apply(p.model), apply(p.train)
    if data.dataset != p.data.dataset:
        # Another dataset than the profile's (e.g. --dataset imagefolder --data-dir flowers/):
        # the class count comes from the data itself (decoded once, cached).
        model = model.replace(num_classes=load_data(data).num_classes)
    return p.replace(data=data, model=model, train=train_)


def cells_for(ablation: Ablation | str, options: Options) -> list[Cell]:
    """The one place where (profile, options) become cells: every case x seed, learning rate settled."""
    ablation = ABLATIONS[ablation] if isinstance(ablation, str) else ablation
    base = baseline(options)
    # The id covers the data's content: load it (memoised, memory-mapped; decoded once into the cache).
    data = base.data.replace(fingerprint=load_data(base.data).fingerprint)
    given = tuple((f.name, getattr(options, f.name)) for f in dataclasses.fields(options)
                  if f.name != "profile" and getattr(options, f.name) != f.default)
    out = []
    for case in ablation.cases:
        model = base.model.replace(**{**ablation.model, **case.model})
        train_ = base.train.replace(**case.train)
        if train_.lr is None:
            train_ = train_.replace(lr=train_.learning_rate)  # record the number, not "default"
        weights, skip = _weights(ablation, model, train_, options.pretrained)
        tune = ()
        if tuned(ablation, base, options):
            tune = options.tune_grid or tuple(float(f"{train_.lr * f:.3g}") for f in base.lr_grid_factors)
        for seed in range(options.seeds):
            out.append(Cell(ablation.name, case.id, model, train_, data, seed, options.device,
                            (base.bench_batch, base.bench_warmup, base.bench_repeats, base.bench_window_s),
                            base.cpu_threads, options.profile, given, weights=weights, skip=skip, tune=tune))
    return out


def tuned(ablation: Ablation, profile: Profile, options: Options) -> bool:
    """Whether the ablation's cases are tuned (tuning.py): asked with --tune lr, or by default for the
    ablations that compare methods (optimizer) where the profile's budget allows it; never when
    --lr fixes every cell's rate."""
    if options.lr is not None:
        return False
    return options.tune == "lr" or (ablation.tune_by_default and profile.tune_by_default)


def _weights(ablation: Ablation, model: ModelSpec, train_: TrainSpec, source: str | None):
    """(weights, skip reason) of a case. In an ablation that needs pretrained weights, a model the
    source has none for is skipped, its scratch control too (nothing to compare it with)."""
    if not ablation.pretrained:
        return None, None
    try:
        weights = weights_for(source, model)
    except Unavailable as why:
        return None, str(why)
    return (weights if train_.pretrained else None), None  # scratch: random init, its id without weights
