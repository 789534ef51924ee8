"""A cell is one complete run: (model spec, training spec, data spec, seed, device kind).

`cells_for` turns an ablation's cases into cells under a profile and the user's options. Running a
cell is run.py's job.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from . import records
from .data import DataSpec
from .grid import ABLATIONS, Ablation
from .measure import resolve_device
from .models import ModelSpec
from .options import Options
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
    bench: tuple[int, int, int] = field(default=(32, 1, 3), compare=False)  # batch, warm-up, repeats
    cpu_threads: int | None = None  # torch threads for a CPU cell (None: the process's)

    @property
    def device_kind(self) -> str:
        return resolve_device(self.device).type

    def config(self) -> dict:
        """The complete configuration: everything that can change the result (hashed)."""
        config = {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train),
                  "data": self.data.identity(), "seed": self.seed, "device": self.device_kind}
        if config["device"] == "cpu":
            config["cpu_threads"] = self.threads  # CPU float results depend on it
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


def cells_for(ablation: Ablation | str, options: Options) -> list[Cell]:
    ablation = ABLATIONS[ablation] if isinstance(ablation, str) else ablation
    base = options.baseline()
    out = []
    for case in ablation.cases:
        model = base.model.replace(**case.model)
        train_ = base.train.replace(**case.train)
        if options.lr is not None:
            train_ = train_.replace(lr=options.lr)
        elif train_.lr is None:
            train_ = train_.replace(lr=train_.learning_rate)  # record the number, not "default"
        for seed in range(options.seeds):
            out.append(Cell(ablation.name, case.id, model, train_, base.data, seed, options.device,
                            (base.bench_batch, base.bench_warmup, base.bench_repeats), base.cpu_threads))
    return out
