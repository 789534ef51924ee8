"""A cell is one complete run: (model spec, training spec, data spec, seed, device kind).

`cells_for` turns an ablation's cases into cells under a profile and the user's options. Running a
cell is run.py's job.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch

from . import compiled, records
from .data import DataSpec, fingerprint, load_data, resident_bytes
from .data.sources import cache_size
from .grid import ABLATIONS, Ablation, Case, case_selected
from .device import gpu_model, resolve_device
from .measure import check_fits
from .models import ModelSpec, identity_fields
from .options import Options
from .profiles import PROFILES, Profile
from .pretrained import Unavailable, Weights, check_reachable, weights_for
from .trainer import TrainSpec, amp_name
from .warmstart import check_copy
from .errors import UsageError


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
    # The paper's warm starts (warmstart.py): the cell whose trained net this one starts from and
    # which of its layers ("from-A", "all"); it runs first (Cell.needs, run.execute_cell), once, under a lock.
    start: "Cell | None" = None
    start_layers: str = ""
    # Test-time methods of section 3.2 (evaluation.py): a cell that evaluates the trained net of its
    # training cell (this cell without them), not another training; the multi-crop grid's side (the
    # profile's, on every cell: in the identity only of a cell that evaluates with crops).
    evaluate: tuple[str, ...] = ()
    crop_grid: int = 5

    @property
    def device_kind(self) -> str:
        return resolve_device(self.device).type

    def config(self) -> dict:
        """The complete configuration: everything that can change the result (hashed)."""
        device = resolve_device(self.device)
        # amp as the dtype that runs here (auto resolves by the device: trainer.autocast_dtype): a bf16
        # record is never reused for a float32 request, and auto = bf16 where bf16 is what auto runs.
        train = {**identity_fields(self.train), "amp": amp_name(self.train, device)}
        if self.train.compile:  # $VGGBENCH_COMPILE_BACKEND changes what runs: an eager-backend record is not inductor's
            train["compile_backend"] = compiled.backend()
        config = {"model": identity_fields(self.model), "train": train,
                  "data": self.data_identity(), "seed": self.seed, "device": device.type}
        if config["device"] == "cpu":
            config["cpu_threads"] = self.threads  # CPU float results depend on it
        else:  # throughput depends on the GPU model: a record from another model is not this cell's
            config["gpu"] = gpu_model(device)
        if self.weights is not None:
            config["pretrained"] = self.weights.identity()  # the file's sha256 or torchvision's name + hash
        if self.tune:
            config["tune_lr"] = list(self.tune)  # a final cell before tuning (its record is under the tuned id)
        if self.start is not None:  # the id covers the start: another A is another cell
            config["start"] = {"cell": self.start.id, "layers": self.start_layers}
        if self.evaluate:
            config["evaluate"] = list(self.evaluate)
            if {"multi_crop", "dense_multi_crop"} & set(self.evaluate):
                config["crop_grid"] = self.crop_grid
        if self.role != "final":
            config["role"] = self.role  # a tuning cell: never counted as a seed of its case
        return config

    def data_identity(self) -> dict:
        """The data's identity (DataSpec.identity). The copy cached for a training scale (_cached_for)
        is fingerprinted here, when the cell's id is first needed: built only for cells that run, not
        for every collected one (`--case depth:A`, --collect-only, -k depth build no scale copy)."""
        if self.data.fingerprint is None and self.train.scale is not None:
            d = self.data
            return d.replace(fingerprint=_fingerprint(d, d.data_dir, d.cache_dir, d.skip_bad)).identity()
        return self.data.identity()

    @property
    def threads(self) -> int:
        return self.cpu_threads or torch.get_num_threads()

    @property
    def id(self) -> str:
        return records.digest(self.config())[:16]

    @property
    def test_id(self) -> str:
        return f"{self.case}-s{self.seed}"

    def training_cell(self) -> "Cell":
        """The cell that trains the net an evaluation cell evaluates (this cell without its methods)."""
        return dataclasses.replace(self, evaluate=())

    def tuning_cells(self) -> list["Cell"]:
        """The tuning cells of a cell to be tuned (tuning.py): seed 0 at each rate of its grid."""
        return [dataclasses.replace(self, case=f"{self.case}@lr={lr:g}", train=self.train.replace(lr=lr), seed=0,
                                    tune=(), role="tuning", tuning=None)
                for lr in self.tune]

    def needs(self) -> list["Cell"]:
        """The cells whose records this one is computed from, in the order they run (run.py's
        executor runs them first, each under its own lock): an evaluation cell needs its training
        cell (which has the needs below); a cell that starts from a trained net needs that net's
        cell; a cell to be tuned needs its tuning cells (its own id is known only from their records)."""
        if self.evaluate:
            return [self.training_cell()]
        return ([self.start] if self.start is not None else []) + self.tuning_cells()

    def membership(self) -> dict:
        """The row of an ablation's table this cell is (records.memberships): written into its record
        when it runs as that row, read by the tables and the report to place the record."""
        return {"ablation": self.ablation, "case": self.case, "tuned": records.tuned(self.tuning)}


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

    if options.tune is not None and options.lr is not None:
        raise UsageError(f"--tune {options.tune} and --lr do not combine: --lr fixes every cell's rate; drop one")
    if options.tune_grid and options.tune is None and not p.tune_by_default:
        raise UsageError(f"--tune-grid is used only when rates are tuned, and the {options.profile} profile tunes "
                         "none by default: add --tune lr")
    if options.tune_grid and options.lr is not None:
        raise UsageError("--tune-grid and --lr do not combine: --lr fixes every cell's rate; drop one")
    data, model, train_ = apply(p.data), apply(p.model), apply(p.train)
    if data.dataset != p.data.dataset or data.classes is not None:
        # Another dataset than the profile's (e.g. --dataset imagefolder --data-dir flowers/), or a
        # subset of its classes: the class count comes from the data itself (decoded once, cached).
        if data.dataset != p.data.dataset:  # the profile's subsets size its own data, not this one
            data = data.replace(train_subset=options.train_subset, test_subset=options.test_subset)
        whole = load_data(data.replace(train_subset=None, test_subset=None))
        model = model.replace(num_classes=whole.num_classes)
        if data.classes is not None:
            # The names in the dataset's order (one identity however they were given); the profile's
            # subsets were sized for every class: capped at what the chosen classes have (the user's
            # own --train-subset / --test-subset are not: too large stays an error).
            sizes = whole.sizes()
            data = data.replace(classes=tuple(whole.classes),
                                train_subset=_capped(data.train_subset, options.train_subset, sizes["train"]),
                                test_subset=_capped(data.test_subset, options.test_subset, sizes["test"]))
    return p.replace(data=data, model=model, train=train_)


def _capped(n: int | None, given: int | None, available: int) -> int | None:
    if n is None or given is not None or n < available:
        return n
    return None  # the profile's subset covers the whole split of the chosen classes: all of it


def cells_for(ablation: Ablation | str, options: Options, cases=()) -> list[Cell]:
    """The one place where (profile, options) become cells: every case x seed, learning rate settled.
    cases: the `--case` names (grid.case_selected); only those cases' cells, and the cells they
    start from, are built (a large --seeds is never built for every case and then filtered)."""
    ablation = ABLATIONS[ablation] if isinstance(ablation, str) else ablation
    needed = _needed(ablation, cases)
    base = baseline(options)
    # The id covers the data's content: load it (memoised, memory-mapped; decoded once into the cache).
    data = base.data.replace(fingerprint=fingerprint(base.data))
    given = tuple((f.name, getattr(options, f.name)) for f in dataclasses.fields(options)
                  if f.name != "profile" and getattr(options, f.name) != f.default)
    out, trained = [], {}  # trained: (case id, seed) -> its training cell (another case's start)
    for other in {c.start.split(":")[0] for c in needed if c.start and ":" in c.start}:
        starts = tuple(c.start for c in needed if c.start and c.start.startswith(other + ":"))
        trained.update({(f"{other}:{c.case}", c.seed): c.training_cell()
                        for c in cells_for(other, options, starts)})  # another ablation's nets started from
    # One copy of the data for every case of an ablation, cached for its largest training scale.
    largest = max((base.scale_px(c.scale[1]) for c in ablation.cases if c.scale is not None), default=0)
    for case in needed:
        model = base.model.replace(**{**ablation.model, **case.model})
        train_ = base.train.replace(**{**ablation.train, **case.train})
        if train_.lr is None:
            train_ = train_.replace(lr=train_.learning_rate)  # record the number, not "default"
        case_data = data
        if case.scale is not None:
            train_ = train_.replace(scale=tuple(base.scale_px(s) for s in case.scale))
            case_data = _cached_for(data, largest)
        weights, skip = _weights(ablation, model, train_, options.pretrained)
        skip = skip or _from_a_problem(ablation, case, model)
        tune = ()
        if tuned(ablation, base, options):
            tune = options.tune_grid or tuple(float(f"{train_.lr * f:.3g}") for f in base.lr_grid_factors)
        for seed in range(options.seeds):
            def cell(case_id, model, train_, **more) -> Cell:
                return Cell(ablation.name, case_id, model, train_, case_data, seed, options.device,
                            (base.bench_batch, base.bench_warmup, base.bench_repeats, base.bench_window_s),
                            base.cpu_threads, options.profile, given, weights=weights, skip=skip,
                            crop_grid=base.crop_grid, **more)
            start, layers, lr = _start(case, model, trained, seed, lambda m: cell("A", m, train_))
            one = cell(case.id, model.replace(init="paper") if model.init == "from-A" and start is None else model,
                       train_.replace(lr=lr * train_.lr), tune=tune, start=start, start_layers=layers)
            trained[case.id, seed] = one
            if not cases or case_selected(ablation.name, case.id, cases):
                out.append(dataclasses.replace(one, evaluate=case.evaluate) if case.evaluate else one)
    return out


def _needed(ablation: Ablation, cases) -> list[Case]:
    """The ablation's cases to build, in order: all, or those `cases` selects and the cases of this
    ablation they start from (their trained nets are built first)."""
    if not cases:
        return list(ablation.cases)
    by_id = {c.id: c for c in ablation.cases}
    todo = [c for c in ablation.cases if case_selected(ablation.name, c.id, cases)]
    keep = set()
    while todo:
        case = todo.pop()
        keep.add(case.id)
        if case.start in by_id and case.start not in keep:
            todo.append(by_id[case.start])
    return [c for c in ablation.cases if c.id in keep]


def _start(case: Case, model: ModelSpec, trained: dict, seed: int, a_cell) -> tuple[Cell | None, str, float]:
    """(the cell a case starts from, the layers copied, the factor on its learning rate).

    init "from-A" on B-E: net A with the same settings (random "paper" init) trained first, its
    layers copied (warmstart.FROM_A), the rate unchanged as in the paper; on A and A-LRN themselves
    there is nothing to start from: the paper's random init. A case with `start`: that case's
    trained net (same seed), every layer, at case.start_lr x the rate."""
    if model.init == "from-A" and model.config not in ("A", "A-LRN"):
        return a_cell(model.replace(config="A", init="paper")), "from-A", 1.0
    if case.start is not None:
        if (case.start, seed) not in trained:
            raise ValueError(f"case {case.id} starts from {case.start}, which must come before it in its ablation "
                             "(or be named ablation:case)")
        return trained[case.start, seed], "all", case.start_lr
    return None, "", 1.0


def _from_a_problem(ablation: Ablation, case: Case, model: ModelSpec) -> str | None:
    """Why a case cannot start from a trained net A under --init from-A (its layers cannot take A's),
    or None; found from the specs before A or the case is trained."""
    if model.init != "from-A" or model.config in ("A", "A-LRN"):
        return None
    try:
        check_copy(model, model.replace(config="A", init="paper"), "from-A")
    except ValueError as err:
        cause = f" (kernels={model.kernels!r} merges each block's stack into one conv, sized by the block's depth)" \
            if model.kernels != "3x3" else ""
        return f"{ablation.name}:{case.id} cannot start from net A (--init from-A): {err}{cause}"
    return None


def check_runnable(options: Options, cases=()) -> None:
    """Before collection, what would fail cells only once they run, as one ValueError saying what to
    change: a cell too large for this machine's memory even at batch 1 (larger batches are retried at
    half on out-of-memory), a --case that cannot start from net A, --pretrained weights that cannot
    be read or reached."""
    base = baseline(options)
    device, data_bytes = resolve_device(options.device), resident_bytes(base.data)
    for ablation in ABLATIONS.values():
        if ablation.pretrained and not options.pretrained:
            continue  # its cells are skipped
        for case in (c for c in ablation.cases if not cases or case_selected(ablation.name, c.id, cases)):
            model = base.model.replace(**{**ablation.model, **case.model})
            check_fits(model, 1, device, data_bytes, f"{ablation.name}:{case.id} ({model.name} on {base.data.dataset})")
            problem = _from_a_problem(ablation, case, model) if cases else None  # a grid run skips it, saying why
            if problem:
                raise UsageError(f"{problem}; leave the case out or choose another --init")
    if options.pretrained:  # a file is read (and judged) by weights_for; torchvision's are asked for
        for cell in cells_for("transfer", options, cases):
            if cell.weights is not None:
                check_reachable(cell.weights)


def _cached_for(data: DataSpec, largest: int) -> DataSpec:
    """The data cached large enough for crops at a rescaled side up to `largest` (sources.cache_size);
    the larger copy is not built here: its fingerprint is taken when a cell's id is (Cell.data_identity)."""
    size = max(data.image_size, cache_size(data.dataset, largest))
    return data if size == data.image_size else data.replace(image_size=size, fingerprint=None)


@functools.lru_cache(maxsize=None)
def _fingerprint(data: DataSpec, *where) -> str:
    """The content fingerprint of a spec's data (where: the fields outside its equality), once per process."""
    return fingerprint(data)


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
