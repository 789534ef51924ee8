"""The user's options, declared once.

Each option is one field of `Options` (a run over a profile's baseline) or of `launch.LaunchOptions`
(where the cells run), declared with `option(...)`: its help, how its text is read and checked.
That one declaration gives the pytest option (`add_to_pytest`), the `vggbench` CLI flag of the same
name (`add_to_argparse`), and the value in the dataclass (`from_namespace`). Adding an option is
adding one field; `cells.cells_for` is the one place that applies them to a profile.

A field named `batch_size` is the flag `--batch-size`; `None` means "the profile's value".
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from .data import DATASETS
from .models import INITS, MAX_WIDTH
from .errors import UsageError
from .pretrained import check_source
from .profiles import PROFILES
from .trainer import AMPS

MAX_LR = 10.0  # beyond it a learning rate is a typo, not an experiment
MAX_SEEDS = 100  # a confidence interval is tight long before; beyond it a seed count is a typo


def number(kind: type, low: float, what: str, high: float | None = None, above: bool = False) -> Callable[[str], float]:
    """A parser of one number: `kind` (int or float), finite, >= low (> low if `above`), <= high.
    Its error is one line that says what is allowed."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}; {what}")
        if (not math.isfinite(value) or value < low or (above and value == low)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; {what}")
        return value
    parse.__name__ = what.split()[0]  # argparse names the option's type by it in its messages
    return parse


def weights_source(text: str) -> str:
    """--pretrained: torchvision or an existing file (pretrained.check_source says what else to pass)."""
    try:
        check_source(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def rates(text: str) -> tuple[float, ...]:
    """A comma-separated list of learning rates (each a number > 0 and <= MAX_LR), e.g. 0.1,0.03,0.01."""
    one = number(float, 0, f"every rate must be a number > 0 and <= {MAX_LR:g}", MAX_LR, above=True)
    parts = [t.strip() for t in text.split(",")]
    if "" in parts:
        raise argparse.ArgumentTypeError(f"{text!r}: an empty rate; give rates separated by single commas, "
                                         "e.g. 0.1,0.01")
    values = tuple(one(t) for t in parts)
    twice = sorted({t for t, v in zip(parts, values) if values.count(v) > 1})
    if twice:  # a rate tried twice is one tuning cell: the grid would be smaller than it reads
        raise argparse.ArgumentTypeError(f"{text!r}: {twice[0]} is given twice; give each rate once")
    if len(values) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least two rates, comma-separated, e.g. 0.1,0.01")
    return values


def class_list(text: str) -> tuple[str, ...]:
    """--classes: class names or indices, comma-separated; checked against the data's classes when it
    is loaded (data.spec.resolve_classes: an unknown one, or fewer than two, is one line then)."""
    values = tuple(t.strip() for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no class; give two or more names or indices, "
                                         "comma-separated, e.g. airplane,automobile,bird or 0,1,2")
    return values


def option(help: str, default=None, parse: Callable | None = None, choices=None, flag: bool = False,
           many: bool = False, pytest_only: bool = False):
    """A dataclass field that is also a command-line option.
    flag: a switch (store_true); many: repeatable (a tuple of values); pytest_only: no CLI flag."""
    meta = {"help": help, "parse": parse, "choices": choices, "flag": flag, "many": many, "pytest_only": pytest_only}
    return field(default=default, metadata={"option": meta})


def _argparse_kwargs(f: dataclasses.Field, default=dataclasses.MISSING) -> dict:
    meta = f.metadata["option"]
    default = f.default if default is dataclasses.MISSING else default
    if meta["flag"]:
        return {"action": "store_true", "default": default, "help": meta["help"]}
    kw = {"default": list(default) if meta["many"] else default, "help": meta["help"]}
    if meta["many"]:
        kw["action"] = "append"
    if meta["parse"] is not None:
        kw["type"] = meta["parse"]
    if meta["choices"] is not None:
        kw["choices"] = meta["choices"]
    return kw


def declared(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_to_pytest(group, cls) -> None:
    """Every option of `cls` as a pytest option (`group` from parser.getgroup)."""
    for f in declared(cls):
        group.addoption(flag_of(f.name), dest=f.name, **_argparse_kwargs(f))


def add_to_argparse(parser: argparse.ArgumentParser, cls, names: list[str] | None = None, **defaults) -> None:
    """The options of `cls` named in `names` (default: all that are not pytest-only) as CLI flags;
    `defaults` overrides a default for this command (e.g. a benchmark's width)."""
    for f in declared(cls):
        if (names is None and f.metadata["option"]["pytest_only"]) or (names is not None and f.name not in names):
            continue
        parser.add_argument(flag_of(f.name), dest=f.name, **_argparse_kwargs(f, defaults.get(f.name, dataclasses.MISSING)))


def from_namespace(cls, namespace):
    """The dataclass of the options found in a parsed namespace (argparse or pytest's config.option)."""
    values = {}
    for f in declared(cls):
        if hasattr(namespace, f.name):
            value = getattr(namespace, f.name)
            values[f.name] = tuple(value or ()) if f.metadata["option"]["many"] else value
    return cls(**values)


@dataclass(frozen=True)
class Options:
    """What the user chose for a run of ablation cells; None means "the profile's value"."""
    profile: str = option("baseline settings (default smoke)", "smoke", choices=sorted(PROFILES), pytest_only=True)
    seeds: int = option(f"repeat every cell with seeds 0..N-1 (default 1, at most {MAX_SEEDS})", 1,
                        number(int, 1, f"seeds must be an integer >= 1 and <= {MAX_SEEDS}", MAX_SEEDS),
                        pytest_only=True)
    device: str = option("auto (cuda if available), cpu, cuda, cuda:1 ...", "auto")
    epochs: int | None = option("override the profile's epochs", None, number(int, 1, "epochs must be an integer >= 1"),
                                pytest_only=True)
    width: float | None = option("width multiplier on every layer (overrides the profile's)", None,
                                 number(float, 0, f"width must be a number > 0 and <= {MAX_WIDTH:g}", MAX_WIDTH, above=True))
    batch_size: int | None = option("batch size (overrides the profile's)", None,
                                    number(int, 1, "batch size must be an integer >= 1"))
    lr: float | None = option("learning rate of every cell (overrides each optimizer's default)", None,
                              number(float, 0, f"lr must be a number > 0 and <= {MAX_LR:g}", MAX_LR, above=True),
                              pytest_only=True)
    image_size: int | None = option("image size in pixels: a multiple of 32 (overrides the profile's)", None,
                                    number(int, 32, "image size must be an integer >= 32, a multiple of 32"))
    init: str | None = option("random init (overrides the profile's; the init ablation's cases keep theirs): paper = normal, std 0.01 "
                              "(the paper's '10^-2 variance' read as a std of 0.01, as He et al. 2015 do); paper-variance "
                              "= the literal std of 0.1; xavier; kaiming; from-A = the paper's protocol (section 3.1): "
                              "B-E start from a trained A", None, choices=INITS)
    train_subset: int | None = option("train on a stratified subset of N images", None,
                                      number(int, 1, "train subset must be an integer >= 1"))
    test_subset: int | None = option("test on a stratified subset of N images", None,
                                     number(int, 1, "test subset must be an integer >= 1"), pytest_only=True)
    classes: tuple[str, ...] | None = option("train and test on these classes only: names or indices, comma-separated "
                                             "(airplane,automobile,bird or 0,1,2); the profile's subsets are capped "
                                             "at what they have", None, class_list)
    dataset: str | None = option(f"another dataset than the profile's: {', '.join(sorted(DATASETS))} "
                                 "(classes are taken from the data)")
    data_dir: str | None = option("local copy of the dataset (hub parquet layout, pickles, image folder) "
                                  "or a hub id owner/name[@revision]")
    cache_dir: str | None = option("where decoded datasets are cached (default $VGGBENCH_CACHE or ~/.cache/vggbench)")
    skip_bad: bool = option("skip undecodable images (counted) instead of failing", False, flag=True)
    verify_data: bool = option("decode the data again and compare it with its cache entry (a changed entry is "
                               "replaced, one line says so): for data rewritten in place", False, flag=True)
    tune: str | None = option("tune each case's learning rate before the comparison: lr (a log grid around its rate, "
                              "chosen by validation top-1; see vggbench/tuning.py)", None, choices=["lr"],
                              pytest_only=True)
    tune_grid: tuple[float, ...] | None = option("the rates tried with --tune lr, comma-separated (default: the "
                                                 "profile's five over two decades around each case's rate)", None,
                                                 rates, pytest_only=True)
    amp: str | None = option("autocast dtype of training, evaluation and throughput: auto (bf16 on CUDA and on CPUs with "
                             "native bf16 matrix units, AMX or AVX512-BF16; float32 elsewhere), off (float32) or bf16; "
                             "default: the profile's (auto). The dtype that runs is part of each cell's identity",
                             None, choices=AMPS)
    compile: bool = option("torch.compile every model (slow to start; for long runs)", False, flag=True)
    pretrained: str | None = option("ImageNet weights of the transfer ablation: torchvision (the published vgg11/13/16/19 "
                                    "weights, via torch.hub's cache) or a torchvision VGG state-dict FILE", None,
                                    weights_source)


@dataclass(frozen=True)
class Outputs:
    """Where a session's records and tables go, which cells it runs, and what it does with them
    (none of it changes a cell's result: not in Options)."""
    case: tuple[str, ...] = option("run only the cells of this case, matched exactly (A, D-adam; depth:A for one "
                                   "ablation's), unlike -k's substring match; repeatable", (), many=True, pytest_only=True)
    results_dir: str = option("where records and tables go (default results/)", "results")
    rerun: bool = option("recompute cells that already have a record", False, flag=True, pytest_only=True)
    report: bool = option("build the report (as `vggbench report`) into <results-dir>/report at session end",
                          False, flag=True, pytest_only=True)
    progress: str = option("live progress of each cell: auto (a bar on a terminal, else one line per epoch), "
                           "bar, lines or off", "auto", choices=("auto", "bar", "lines", "off"), pytest_only=True)
