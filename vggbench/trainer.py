"""The trainer: optimiser, LR schedule, epochs, held-out evaluation, and the run's status.

Guarantees (the mistakes it makes impossible):
- metrics accumulate as device tensors; the host syncs once per epoch, never per step;
- the LR scheduler steps after the optimiser (per step for "cosine"/"step", per epoch on val
  loss for the paper's "plateau");
- val picks the best epoch; test is evaluated once, at the end, on held-out data;
- a run that diverges (non-finite or exploding loss) or does not learn (train loss still at
  chance, ln C) stops early and returns a status: "ok" | "diverged" | "stalled"; a run that ends
  before the stall window (fewer epochs than `stall_epochs`) cannot be judged: "unjudged";
- transfer modes (transfer.py): only trainable parameters reach the optimiser, frozen BatchNorm
  layers keep their statistics, and pretrained weights get the ImageNet normalisation they expect.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import compiled, pretrained, transfer
from .errors import UsageError
from .statuses import TRAINED, Status
from .data import ImageData, stratified_subset
from .device import cpu_bf16_units, cuda_index, set_math_mode
from .loader import DeviceLoader

OPTIMIZERS = ("sgd", "adam", "adagrad")
DEFAULT_LR = {"sgd": 0.02, "adam": 1e-3, "adagrad": 1e-2}
SCHEDULES = ("none", "step", "cosine", "plateau")
AMPS = ("auto", "off", "bf16")  # autocast_dtype
STATUSES = TRAINED  # what a training run ends as (vggbench.statuses; a cell that raised: Status.ERROR)
DIVERGE_FACTOR = 10.0   # train loss above 10 x ln(C) (chance) counts as diverged
STALL_TOLERANCE = 0.02  # train loss within 2% of ln(C) after `stall_epochs` counts as stalled


class TrainSpecError(UsageError):
    pass


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = "sgd"
    lr: float | None = None          # None: the optimiser's default (DEFAULT_LR)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4       # the paper's L2 multiplier
    schedule: str = "cosine"
    step_epochs: int = 30            # "step": x gamma every step_epochs epochs
    gamma: float = 0.1
    epochs: int = 2
    batch_size: int = 128
    grad_clip: float | None = None   # max global grad norm
    augment: bool = True             # random crop (pad 4) + horizontal flip
    # The training scale S of the paper (section 3.1), in pixels: each image rescaled so its side is
    # S ~ U[Smin, Smax] (Smin == Smax: a fixed S), a random crop of the model's size taken and
    # mirrored; val and test see the centre crop at Q = (Smin + Smax) / 2. None: the loader's policy.
    scale: tuple[int, int] | None = None
    channels_last: bool = True
    amp: str = "auto"                # autocast: "auto", "off" (float32), "bf16" (AMPS; autocast_dtype)
    stall_epochs: int = 2            # judge "stalled" from this epoch on
    compile: bool = False            # torch.compile the model (first steps pay the compile time;
                                     # backend: compiled.py, $VGGBENCH_COMPILE_BACKEND)
    transfer: str = "scratch"        # transfer.MODES: scratch | finetune | frozen | linear
    pretrained_lr_scale: float = 1.0  # LR multiplier of the trainable pretrained layers (transfer.py)
    # The pitfalls ablation's wrong protocols, measured rather than described: after every epoch the
    # test set and a training-set sample of val's size (eval mode, no augmentation) are evaluated too,
    # into the history (test_top1, train_eval_top1; records.readings). Never used for selection. In
    # the identity only when set (models.identity_fields): earlier cells keep their ids.
    readings: bool = field(default=False, metadata={"identity": "when_set"})
    # The paper's "random RGB colour shift" (section 3.1; AlexNet's PCA lighting noise, loader.colour_shift)
    # on training batches: part of the paper's recipe (the imagenet profile), off elsewhere. In the
    # identity only when set: earlier cells keep their ids.
    colour_shift: bool = field(default=False, metadata={"identity": "when_set"})

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise TrainSpecError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise TrainSpecError(f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.amp not in AMPS:
            raise TrainSpecError(f"unknown amp {self.amp!r}: choose auto, off or bf16")
        if self.epochs < 1:
            raise TrainSpecError(f"epochs {self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise TrainSpecError(f"batch size {self.batch_size} must be at least 1")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainSpecError(f"learning rate {self.lr} must be a finite number > 0")
        if self.transfer not in transfer.MODES:
            raise TrainSpecError(f"unknown transfer {self.transfer!r}: choose one of {', '.join(transfer.MODES)}")
        if self.scale is not None and not (len(self.scale) == 2 and 1 <= self.scale[0] <= self.scale[1]):
            raise TrainSpecError(f"scale {self.scale} must be (Smin, Smax) with 1 <= Smin <= Smax, in pixels")
        if not self.pretrained_lr_scale > 0:
            raise TrainSpecError(f"pretrained_lr_scale {self.pretrained_lr_scale} must be > 0")

    @property
    def pretrained(self) -> bool:
        """Starts from pretrained weights (every transfer mode but scratch)."""
        return self.transfer != "scratch"

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def replace(self, **changes) -> "TrainSpec":
        return dataclasses.replace(self, **changes)


OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}



# What a status says, for tables and the report: "stalled" judges the training loss only (the run is
# stopped then), so a stalled net can still score somewhat above chance on test.
STATUS_MEANS = {
    Status.STALLED: f"its train loss was still within {STALL_TOLERANCE:.0%} of chance (ln C) after its stall window "
               f"({TrainSpec.stall_epochs} epochs by default), so it was stopped; judged on the train loss alone, "
               "its test accuracy can be above chance",
    Status.DIVERGED: f"its train loss was not finite or above {DIVERGE_FACTOR:g} x chance (ln C), so it was stopped",
    Status.UNJUDGED: "it ran fewer epochs than the stall window, too few to judge whether it learns",
}


def make_optimizer(model: nn.Module, spec: TrainSpec, fused: bool = True) -> torch.optim.Optimizer:
    """The optimiser over the trainable parameters only (frozen ones have requires_grad=False), one
    learning rate per transfer group (transfer.lr_groups; one group when training from scratch).
    fused asks for one fused kernel per step; if this torch cannot build it or run its
    first step (some versions accept fused=True for a class and fail only in step()), multi-tensor
    (foreach) updates are used instead. Fused on CPU too: there a foreach update is a loop of small
    kernels per tensor; VGG-D-BN at width 1/8 (54 tensors, 1 thread, min of 300 steps, AMD EPYC):
    SGD 350 -> 118 us a step, Adam 1051 -> 321, Adagrad 796 -> 266 (~1.5% of a width-1/8 SGD step)."""
    lr = spec.learning_rate
    groups = []
    for params, scale in transfer.lr_groups(model, spec.transfer, spec.pretrained_lr_scale):
        # No weight decay on biases and BN parameters (1-d tensors), as in most modern recipes.
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": spec.weight_decay, "lr": lr * scale},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": lr * scale}]
    groups = [g for g in groups if g["params"]]
    cls = OPTIMIZER_CLASSES[spec.optimizer]
    kw = dict(lr=lr, **(dict(momentum=spec.momentum, nesterov=spec.nesterov) if spec.optimizer == "sgd" else {}))
    if fused and _fused_steps(cls, groups[0]["params"][0], kw, spec.weight_decay):
        return cls(groups, fused=True, **kw)
    return cls(groups, foreach=True, **kw)


def _fused_steps(cls, like: torch.Tensor, kw: dict, weight_decay: float) -> bool:
    """Whether a fused `cls` builds and steps on `like`'s device and dtype: tried on a throw-away
    parameter, so the model's own state is never touched by a failing first step."""
    probe = torch.zeros(2, device=like.device, dtype=like.dtype, requires_grad=True)
    probe.grad = torch.ones_like(probe)
    try:
        cls([probe], fused=True, weight_decay=weight_decay, **kw).step()
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False
    return True


def make_scheduler(opt: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int):
    """(per-step scheduler or None, per-epoch plateau scheduler or None)."""
    total = max(1, spec.epochs * steps_per_epoch)
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))), None
    if spec.schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: spec.gamma ** (s // (spec.step_epochs * steps_per_epoch))), None
    if spec.schedule == "plateau":
        # The paper: divide the LR by 10 when validation stops improving.
        return None, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=1)
    return None, None


def autocast_dtype(spec: TrainSpec, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training, evaluation and throughput (None: float32). "auto" is bf16 on
    CUDA and on a CPU with native bf16 matrix units (device.cpu_bf16_units: AMX, AVX512-BF16), where
    VGG-D-BN trains ~2x faster than in float32 (docs/measurement.md); float32 on other CPUs, whose
    bf16 products have no native units to run on."""
    if spec.amp == "bf16" or (spec.amp == "auto" and (device.type == "cuda" or cpu_bf16_units() is not None)):
        return torch.bfloat16
    return None


def amp_name(spec: TrainSpec, device: torch.device) -> str:
    """The dtype the model's products run in, as records and tables name it: bfloat16 or float32."""
    return "bfloat16" if autocast_dtype(spec, device) is not None else "float32"


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, amp_dtype=None) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (in %) over a loader, with one host sync."""
    model.eval()
    dev = loader.device
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    top1 = torch.zeros((), device=dev, dtype=torch.long)
    top5 = torch.zeros((), device=dev, dtype=torch.long)
    for x, y in loader:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        k = min(5, out.shape[1])
        hits = out.topk(k, dim=1).indices == y[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(1).sum()
    n = len(loader.y)
    loss, t1, t5 = (loss_sum / n).item(), (top1 * 100.0 / n).item(), (top5 * 100.0 / n).item()
    return {"loss": loss, "top1": t1, "top5": t5}


def judge(train_loss: float, epoch: int, num_classes: int, spec: TrainSpec) -> Status:
    """The status of a run after `epoch` (1-based) epochs."""
    chance = math.log(num_classes)
    if not math.isfinite(train_loss) or train_loss > DIVERGE_FACTOR * chance:
        return Status.DIVERGED
    if epoch >= spec.stall_epochs and train_loss > (1 - STALL_TOLERANCE) * chance:
        return Status.STALLED
    return Status.OK


def _state(model, opt, per_step, plateau, loader, history) -> dict:
    # RNG states as bytes: torch.load's map_location moves tensors (to the GPU, on resume), and
    # torch.set_rng_state / Generator.set_state accept only CPU byte tensors.
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "per_step": per_step.state_dict() if per_step else None,
            "plateau": plateau.state_dict() if plateau else None,
            "torch_rng": _bytes(torch.get_rng_state()), "loader_rng": _bytes(loader.generator.get_state()),
            "cuda_rng": [_bytes(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
            "history": history}


def _bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _rng(state) -> torch.Tensor:
    """An RNG state as the CPU byte tensor torch wants, from bytes or from a tensor on any device."""
    if isinstance(state, (bytes, bytearray)):
        return torch.frombuffer(bytearray(state), dtype=torch.uint8)
    return state.to("cpu", torch.uint8)


def restore_rng(state: dict, loader: DeviceLoader) -> None:
    torch.set_rng_state(_rng(state["torch_rng"]))
    loader.generator.set_state(_rng(state["loader_rng"]))
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_rng(s) for s in state["cuda_rng"]])


def _restore(state, model, opt, per_step, plateau, loader) -> list[dict]:
    model.load_state_dict(state["model"])  # copies onto the model's device
    opt.load_state_dict(state["optimizer"])  # casts the state to each parameter's device
    if per_step:
        per_step.load_state_dict(state["per_step"])
    if plateau:
        plateau.load_state_dict(state["plateau"])
    restore_rng(state, loader)
    return state["history"]


def train(model: nn.Module, data: ImageData, spec: TrainSpec, device: torch.device, seed: int = 0,
          on_epoch=None, checkpoint=None, resident_bytes: int | None = None) -> dict:
    """Train `model` on `data.train`, select on `data.val`, report `data.test`. Returns the result:
    {"status", "epochs_run", "history": [per-epoch dict], "test": {...}, "best_epoch", "best_val_top1"}.

    With `checkpoint` (a checkpoint.Checkpoint), the full training state (model, optimiser,
    schedulers, RNG states, history) is saved after every epoch and a run that was killed resumes
    from its last epoch, ending exactly as an uninterrupted run would (bit-identical on CPU).

    `on_epoch(row)` is called after each epoch with the history row plus "epochs" (planned),
    "images" (trained on) and "train_s" (seconds of the epoch's training, without evaluation).
    resident_bytes: the most image bytes the loaders keep on the device (DeviceLoader); more is read
    in prefetched chunks. With spec.compile the result says what really ran compiled ("compiled")."""
    torch.manual_seed(seed)
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.cuda.set_device(cuda_index(device))  # streams, events, compiled kernels: this GPU
    model = model.to(device, memory_format=fmt)
    set_math_mode(device)
    step_model = compiled.compile_model(model) if spec.compile else model
    amp = autocast_dtype(spec, device)
    bs = spec.batch_size
    # Pretrained weights expect the normalisation they were trained with; from scratch, the data's own.
    mean, std = pretrained.normalization() if spec.pretrained else (data.mean, data.std)
    common = dict(mean=mean, std=std, device=device, channels_last=spec.channels_last,
                  resident_bytes=resident_bytes, scale=spec.scale, crop=model.spec.image_size)
    train_loader = DeviceLoader(data.train_x, data.train_y, bs, train=True, augment=spec.augment, seed=seed,
                                colour_pca=data.colour_pca() if spec.colour_shift else None, **common)
    val_loader = DeviceLoader(data.val_x, data.val_y, bs, **common)
    test_loader = DeviceLoader(data.test_x, data.test_y, bs, **common)
    if spec.readings:  # "validation" on the training set, as some write-ups did: as many images as val
        pick = stratified_subset(data.train_y, len(data.val_y), seed=3)
        train_eval_loader = DeviceLoader(data.train_x[pick], data.train_y[pick], bs, **common)
    opt = make_optimizer(model, spec)
    per_step, plateau = make_scheduler(opt, spec, len(train_loader))

    history, status = [], Status.OK
    # On the CPU: load_state_dict moves each tensor where it belongs; the RNG states stay CPU bytes.
    state = checkpoint.load(map_location="cpu") if checkpoint is not None else None
    if state is not None:
        history = _restore(state, model, opt, per_step, plateau, train_loader)
    for epoch in range(len(history) + 1, spec.epochs + 1):
        start = time.perf_counter()
        transfer.train_mode(model)  # frozen BN layers stay in eval mode
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        lr = opt.param_groups[0]["lr"]
        for x, y in train_loader:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = step_model(x)
                loss = F.cross_entropy(out, y)
            loss.backward()
            if spec.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if per_step is not None:
                per_step.step()  # after opt.step(), never before
            loss_sum += loss.detach().double() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
        train_loss = (loss_sum / max(seen, 1)).item()  # the epoch's one sync
        train_s = time.perf_counter() - start
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_top1": (correct * 100.0 / max(seen, 1)).item()}
        status = judge(train_loss, epoch, data.num_classes, spec)
        if status != Status.DIVERGED:
            val = evaluate(model, val_loader, amp)
            row.update({f"val_{k}": v for k, v in val.items()})
            if plateau is not None:
                plateau.step(val["loss"])
        row["epoch_s"] = time.perf_counter() - start  # train + val; both end in a host sync (.item())
        if spec.readings and status != Status.DIVERGED:  # after the epoch's time: not part of it
            row.update({f"test_{k}": v for k, v in evaluate(model, test_loader, amp).items()})
            row["train_eval_top1"] = evaluate(model, train_eval_loader, amp)["top1"]
        history.append(row)
        if on_epoch is not None:  # the row, and what progress needs besides (train_s: host clock after the sync)
            on_epoch({**row, "epochs": spec.epochs, "images": seen, "train_s": train_s})
        if status != Status.OK:
            break
        if checkpoint is not None and epoch < spec.epochs:
            checkpoint.save(_state(model, opt, per_step, plateau, train_loader, history))

    if status == Status.OK and len(history) < spec.stall_epochs:
        status = Status.UNJUDGED  # too few epochs to tell learning from a stall: never "ok" by default
    result = {"status": status.value, "epochs_run": len(history), "history": history,
              "compiled": compiled.report() if spec.compile else None}
    vals = [h for h in history if "val_top1" in h]
    if vals:
        best = max(vals, key=lambda h: h["val_top1"])
        result.update(best_epoch=best["epoch"], best_val_top1=best["val_top1"])
    if status != Status.DIVERGED:
        result["test"] = evaluate(model, test_loader, amp)
    return result
