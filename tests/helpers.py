"""Helpers shared by the test modules (which never import each other). Starting a `pytest
ablations` session is not here: that is the `ablations` fixture of conftest.py, and only it."""
from pathlib import Path

import pytest
import torch

from vggbench.data import ImageData, channel_stats, synthetic
from vggbench.models import build_model
from vggbench.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
# The real CIFAR-10 copy beside the repository (../shared); tests that need it skip without it.
CIFAR10 = ROOT.parent / "shared/data/cifar10"
# A short training that still exercises the whole cell: one epoch on a small subset.
FAST = ["--epochs", "1", "--train-subset", "160", "--test-subset", "100"]


def collected(ablations, *args):
    """The test ids (`test_kernel[D-3x3-s0]`) that `pytest ablations --collect-only ARGS` selects."""
    out = ablations("--collect-only", *args).stdout
    return sorted(line.split("::")[1] for line in out.splitlines() if "::" in line)


def files_under(path):
    """Every file and folder under path, relative, sorted: to check that nothing was written."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def usage_error(argv) -> str:
    """The usage error that `pytest ablations ARGV` stops with before collection, found in-process
    by the checks its configure runs (vggbench.preflight); fails the test if there is none."""
    import argparse

    from vggbench import preflight
    from vggbench.errors import UsageError

    try:
        preflight.check_namespace(preflight.session_parser(exit_on_error=False).parse_args(argv))
    except (UsageError, argparse.ArgumentError) as err:
        return str(err)
    raise AssertionError(f"pytest ablations {' '.join(argv)}: no usage error")


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows of a cell's curves: tag -> [(step, value)] (orphaned points purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# --- tiny nets and data for the training paths (test_gpu_paths.py on CPU, test_gpu.py on a GPU)

def tiny_data() -> ImageData:
    """256 / 64 / 80 synthetic images, 32 px."""
    x, y = synthetic.generate(400, 32, seed=3)
    mean, std = channel_stats(x)
    return ImageData("tiny", list(synthetic.CLASSES), x[:256], y[:256], x[256:320], y[256:320], x[320:], y[320:],
                     mean=mean, std=std)


def tiny_model(config="A", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(config=config, width=0.125, image_size=32, num_classes=10, head="linear", **kw)


class Killed(Exception):
    pass


def die_at(epoch):
    def on_epoch(row):
        if row["epoch"] == epoch:
            raise Killed
    return on_epoch


def untimed(result: dict) -> dict:
    """A result without its per-epoch wall times: the one field two identical runs may differ in."""
    return {**result, "history": [{k: v for k, v in h.items() if k != "epoch_s"} for h in result["history"]]}


def killed_then_resumed(tiny, spec, ckpt, device=torch.device("cpu"), **kw):
    """Train until the last epoch ends (killed before its checkpoint), then resume in a 'new process'."""
    with pytest.raises(Killed):
        train(tiny_model(batch_norm=True), tiny, spec, device, seed=1, on_epoch=die_at(spec.epochs), checkpoint=ckpt, **kw)
    assert ckpt.load()["history"][-1]["epoch"] == spec.epochs - 1
    torch.manual_seed(999)
    return train(tiny_model(batch_norm=True), tiny, spec, device, seed=1, checkpoint=ckpt, **kw)


def record_of(cell, **fields) -> dict:
    """A minimal well-formed record of `cell` (its id, its configuration) with `fields` on top: what
    records.read_record accepts as the cell's own (a record of another shape is set aside)."""
    return {"cell_id": cell.id, "config": cell.config(), "ablation": cell.ablation, "case": cell.case,
            "status": "ok", **fields}
