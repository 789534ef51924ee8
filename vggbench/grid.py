"""The ablation grid as data: each ablation is a list of cases, each case a few field changes to
the profile's baseline model and training spec. The modules under ablations/ parametrise over
these; the report and `vggbench collect` read the same list.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .evaluation import METHODS
from .errors import UsageError


@dataclass(frozen=True)
class Case:
    id: str                                     # pytest id part, e.g. "D-adam"; works with -k
    model: dict = field(default_factory=dict)   # ModelSpec field changes
    train: dict = field(default_factory=dict)   # TrainSpec field changes
    # The paper's training scale S (section 3.1) in the paper's pixels (for its 224 crop): (256, 256)
    # fixed, (256, 512) jittered; a profile maps it to its own image size (profiles.Profile.scale_px).
    scale: tuple[int, int] | None = None
    # The case (same seed; in this ablation, or "ablation:case") whose trained net this one starts
    # from, every layer copied, at start_lr x its learning rate: the paper's S = 384 net, started from
    # S = 256 at 10^-3 (a tenth), and its jittered nets, fine-tuned from S = 384 (section 3.1: "for
    # speed reasons"; the rate is not given there: the S = 384 net's, a tenth of the profile's).
    start: str | None = None
    start_lr: float = 0.1
    # The test-time methods of section 3.2 (evaluation.METHODS) computed from the trained net: results
    # of its training cell, not another training.
    evaluate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Display:
    """How the report shows an ablation, so that the report itself names none. The order of an
    ablation's cases is the order of its table rows and plot axes."""
    cost_plots: bool = False            # variants differ in cost: plot accuracy vs GMACs and params
    references: tuple[str, ...] = ()    # tables of vggbench/references.json shown beside its results
    baseline: str | None = None         # the case every Δ is taken against; None: per model config, its first case
    stall_is_outcome: bool = False      # a stalled cell here is the finding (e.g. an init that cannot train),
                                        # not a sign of too small a budget


@dataclass(frozen=True)
class Ablation:
    name: str
    question: str
    cases: tuple[Case, ...]
    display: Display = Display()

    def baseline_of(self, case: Case) -> Case:
        """The case that `case` is compared with in the report's Δ column."""
        if self.display.baseline is not None:
            return next(c for c in self.cases if c.id == self.display.baseline)
        return next(c for c in self.cases if c.model.get("config") == case.model.get("config"))
    # Model fields every case fixes over the profile and the options; the transfer ablation: the
    # architecture of the published weights (not an axis: the same for all its cases).
    model: dict = field(default_factory=dict)
    # Training fields every case fixes (pitfalls: the per-epoch readings its claims are read from).
    train: dict = field(default_factory=dict)
    # Its cells need --pretrained (cells_for resolves the weights; without them they are skipped).
    pretrained: bool = False
    # It compares methods that each have their own best learning rate: tuned first wherever the
    # profile's budget allows (cells.tuned, tuning.py), else compared at fixed defaults, saying so.
    tune_by_default: bool = False


def _cases(*cases: Case) -> tuple[Case, ...]:
    return tuple(cases)


ABLATIONS: dict[str, Ablation] = {a.name: a for a in [
    Ablation("depth", "Does depth help? Configurations A-E of Table 1 (paper Table 3).",
             _cases(*(Case(c, {"config": c}) for c in ("A", "A-LRN", "B", "C", "D", "E"))),
             Display(cost_plots=True, references=("paper_table3",), baseline="A")),
    Ablation("batchnorm", "Does batch norm help (torchvision vgg*_bn)?",
             _cases(*(Case(f"{c}-{'bn' if bn else 'plain'}", {"config": c, "batch_norm": bn})
                      for c in ("A", "D", "E") for bn in (False, True))),
             Display(references=("torchvision", "cifar10", "tiny_imagenet"))),
    Ablation("kernel", "Stacks of 3x3 convs vs one large kernel of the same receptive field (section 4.1).",
             _cases(*(Case(f"{c}-{k}", {"config": c, "kernels": k}) for c in ("B", "D") for k in ("3x3", "large"))),
             Display(cost_plots=True)),
    Ablation("init", "Initialisation without BN: the paper's normal init (std 0.01), its start from a trained net A (section 3.1), "
             "Xavier and Kaiming.",
             _cases(*(Case(f"{c}-{i}", {"config": c, "init": i, "batch_norm": False})
                      for c in ("D", "E") for i in ("paper", "from-A", "xavier", "kaiming"))),
             Display(stall_is_outcome=True)),
    Ablation("scale", "Training scale (paper Table 3): fixed S = 256, S = 384 started from S = 256, and scale "
             "jittering S in [256, 512], on C, D and E; tested at one scale Q, densely (section 3.2).",
             _cases(*(Case(f"{c}-{name}", {"config": c}, scale=s, start=start and f"{c}-{start}", evaluate=("single_scale",))
                      for c in ("C", "D", "E")
                      for name, s, start in (("S256", (256, 256), None), ("S384", (384, 384), "S256"),
                                             ("S256-512", (256, 512), "S384")))),
             Display(references=("paper_table3_scale",))),
    Ablation("evaluation", "Test-time evaluation (paper Tables 4-5): one scale vs several (Q = S - 32, S, S + 32 for "
             "a fixed S; 256, 384, 512 for S in [256, 512]) on C, D and E at every training scale, and dense vs "
             "multi-crop vs both on D and E trained with scale jittering; each trained net is the scale "
             "ablation's, evaluated every way (no training of its own).",
             # Same model, scale and start as the scale ablation's cases: the same training cells (cells.Cell.config).
             _cases(*(Case(f"{c}-{name}", {"config": c}, scale=s, start=start and f"scale:{c}-{start}",
                           evaluate=METHODS if name == "S256-512" and c in ("D", "E") else ("single_scale", "multi_scale"))
                      for c in ("C", "D", "E")
                      for name, s, start in (("S256", (256, 256), None), ("S384", (384, 384), "S256"),
                                             ("S256-512", (256, 512), "S384")))),
             Display(references=("paper_table4", "paper_table5"))),
    Ablation("optimizer", "SGD with momentum vs Adam vs Adagrad, each at its own learning rate, on D.",
             _cases(*(Case(f"D-{o}", {"config": "D"}, {"optimizer": o}) for o in ("sgd", "adam", "adagrad"))),
             Display(references=("cifar10_optimizers",)), tune_by_default=True),
    Ablation("transfer", "ImageNet-pretrained weights vs training from scratch on the chosen data: fine-tune all "
             "layers, freeze the features, or train only a new last layer (transfer.py).",
             _cases(*(Case(f"{c}-{m}", {"config": c}, {"transfer": m})
                      for c in ("D", "A") for m in ("scratch", "finetune", "frozen", "linear"))),
             model={"head": "paper", "width": 1.0, "kernels": "3x3"}, pretrained=True),
    Ablation("pitfalls", "The mistakes of VGG write-ups, each beside its correction on the same net and data: a ReLU "
             "after the last linear layer, with SGD and with Adagrad; the epoch chosen on test instead of val; "
             "'validation' on the training set instead of held-out val (the last two read from each run's "
             "per-epoch history: records.readings).",
             _cases(*(Case(f"{o}{'-final-relu' if relu else ''}", {"config": "D", "final_relu": relu}, {"optimizer": o})
                      for o in ("sgd", "adagrad") for relu in (False, True))),
             # a stall with the final ReLU is the mistake's effect, measured; not a short budget
             Display(baseline="sgd", stall_is_outcome=True), train={"readings": True}),
]}


def case_selected(ablation: str, case: str, wanted) -> bool:
    """Whether `--case` names select this case: its id exactly (A, D-adam) or ablation:id (depth:A).
    Unlike pytest's -k, never a substring ("-k 'depth and A'" selects all six depth cells)."""
    return any(w in (case, f"{ablation}:{case}") for w in wanted)


def check_case_names(wanted) -> None:
    """UsageError naming the first `--case` that selects nothing, with the cases there are."""
    unknown = [w for w in wanted if not any(case_selected(a.name, c.id, [w]) for a in ABLATIONS.values() for c in a.cases)]
    if unknown:
        raise UsageError(f"--case {unknown[0]}: no such case; cases are "
                         + "; ".join(f"{a.name}: {' '.join(c.id for c in a.cases)}" for a in ABLATIONS.values()))
