"""The trainer on a tiny problem: learns, is deterministic, reports divergence and stalls, resumes."""
import math

import pytest
import torch

from fixtures_data import synthetic_splits
from helpers import Killed, untimed
from vggbench import notices, trainer
from vggbench.checkpoint import Checkpoint
from vggbench.loader import DeviceLoader, random_crop_flip
from vggbench.models import build_model, identity_fields
from vggbench.trainer import TrainSpec, TrainSpecError, judge, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return synthetic_splits(400, 100, 100)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(**{"config": "A", "batch_norm": True, "width": 0.125, "image_size": 32,
                          "num_classes": 10, "head": "linear", **kw})


SPEC = TrainSpec(epochs=3, batch_size=32, lr=0.05, augment=False, stall_epochs=99)


def test_loss_goes_down(tiny):
    result = train(model(), tiny, SPEC, CPU, seed=0)
    losses = [h["train_loss"] for h in result["history"]]
    # 3 epochs inside a 99-epoch stall window: learning is not judged, so the status is not "ok"
    assert result["status"] == "unjudged" and result["epochs_run"] == 3
    assert losses[-1] < losses[0] - 0.2
    assert set(result["test"]) == {"loss", "top1", "top5"}
    assert 0 <= result["test"]["top1"] <= result["test"]["top5"] <= 100


def test_deterministic_with_seed(tiny):
    spec = SPEC.replace(epochs=2, augment=True)
    a = train(model(1), tiny, spec, CPU, seed=1)
    b = train(model(1), tiny, spec, CPU, seed=1)
    assert all(h["epoch_s"] > 0 for h in a["history"])   # wall time per epoch: the one field that may differ
    assert untimed(a) == untimed(b)
    c = train(model(2), tiny, spec, CPU, seed=2)
    assert c["history"] != a["history"]


def test_huge_learning_rate_diverges_and_stops_early(tiny):
    result = train(model(batch_norm=False), tiny, SPEC.replace(lr=1e3, epochs=5), CPU)
    assert result["status"] == "diverged"
    assert result["epochs_run"] == 1
    assert "test" not in result


def test_stalled_run_is_a_status():
    chance = math.log(10)
    spec = TrainSpec(stall_epochs=2)
    assert judge(chance, 1, 10, spec) == "ok"           # too early to call
    assert judge(chance, 2, 10, spec) == "stalled"      # the 2.3026 plateau
    assert judge(0.9 * chance, 2, 10, spec) == "ok"
    assert judge(float("nan"), 1, 10, spec) == "diverged"
    assert judge(float("inf"), 1, 10, spec) == "diverged"
    assert judge(100.0, 1, 10, spec) == "diverged"


def test_a_run_shorter_than_the_stall_window_is_unjudged(tiny):
    short = train(model(), tiny, SPEC.replace(epochs=1, stall_epochs=2), CPU)
    judged = train(model(), tiny, SPEC.replace(epochs=1, stall_epochs=1), CPU)
    assert short["status"] == "unjudged" and short["epochs_run"] == 1
    assert judged["status"] in ("ok", "stalled") and judged["test"] == short["test"]  # the same run, judged


def test_scheduler_steps_after_optimizer(tiny):
    # A scheduler stepped before the optimiser makes torch warn and skips the first LR value.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = train(model(), tiny, SPEC.replace(epochs=2, schedule="cosine"), CPU)
    assert result["history"][0]["lr"] == pytest.approx(0.05)  # epoch 1 starts at the full LR
    assert result["history"][1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 2)), rel=0.05)


@pytest.mark.parametrize("optimizer", trainer.OPTIMIZERS)
@pytest.mark.parametrize("schedule", trainer.SCHEDULES)
def test_every_optimizer_and_schedule_runs(tiny, optimizer, schedule):
    spec = SPEC.replace(epochs=1, optimizer=optimizer, schedule=schedule, lr=None, grad_clip=1.0, nesterov=optimizer == "sgd")
    result = train(model(), tiny, spec, CPU)
    assert result["status"] == "unjudged" and math.isfinite(result["history"][0]["train_loss"])


@pytest.mark.parametrize("fields,message", [
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(epochs=0), "epochs 0 must be at least 1"),
    (dict(batch_size=0), "batch size 0 must be at least 1"),
    (dict(lr=-1.0), "learning rate -1.0 must be a finite number > 0"),
    (dict(lr=float("inf")), "learning rate inf must be a finite number > 0"),
])
def test_bad_train_spec(fields, message):
    with pytest.raises(TrainSpecError, match=message):
        TrainSpec(**fields)


# Every way a tensor's value reaches Python: each one waits for the GPU (a host sync).
HOST_SYNCS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


def host_syncs(monkeypatch) -> list[str]:
    """The names of the Tensor methods called from here on that read a value back to the host."""
    calls = []
    for name in HOST_SYNCS:
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name, **k:
                            calls.append(_name) or _real(self, *a, **k))
    return calls


def test_no_host_sync_in_the_hot_loop(tiny, monkeypatch):
    """One host sync per epoch for the train metrics and one per evaluation, whatever the number of
    steps: the same count at 12 steps an epoch as at 25 (on CUDA, test_gpu.py checks the same with
    torch.cuda.set_sync_debug_mode)."""
    counts = {}
    for batch in (32, 16):
        calls = host_syncs(monkeypatch)
        train(model(), tiny, SPEC.replace(epochs=2, batch_size=batch), CPU)
        counts[batch] = list(calls)
        monkeypatch.undo()
    assert counts[32] == counts[16]
    assert len(counts[32]) == 2 * 5 + 3  # per epoch: 2 (train loss, acc) + 3 (val); at the end 3 (test)
    # and the counter sees each way (a float() or a bool() in the loop would show)
    calls = host_syncs(monkeypatch)
    t = torch.ones(())
    float(t), int(t), bool(t), t.item(), t.tolist()
    assert calls == ["__float__", "__int__", "__bool__", "item", "tolist"]


@pytest.mark.parametrize("amp", ["off", "bf16"])  # equal in both dtypes (issue 25: bf16 is auto on many CPUs)
def test_resume_from_checkpoint_equals_uninterrupted(tiny, tmp_path, amp):
    spec = SPEC.replace(epochs=3, augment=True, schedule="cosine", amp=amp)
    full = train(model(4), tiny, spec, CPU, seed=4)

    ckpt = Checkpoint(tmp_path / "cell.ckpt")

    seen = []

    def die_in_epoch_3(row):
        seen.append(row["epoch"])
        if row["epoch"] == 3:
            raise Killed

    with pytest.raises(Killed):
        train(model(4), tiny, spec, CPU, seed=4, on_epoch=die_in_epoch_3, checkpoint=ckpt)
    assert ckpt.load()["history"][-1]["epoch"] == 2
    torch.manual_seed(999)  # a new process has other RNG state: the checkpoint must restore it
    resumed = train(model(4), tiny, spec, CPU, seed=4, checkpoint=ckpt)
    assert untimed(resumed) == untimed(full)


def test_corrupt_checkpoint_is_set_aside(tmp_path):
    ckpt = Checkpoint(tmp_path / "c.ckpt")
    ckpt.save({"x": torch.arange(3)})
    assert torch.equal(ckpt.load()["x"], torch.arange(3))
    blob = bytearray(ckpt.path.read_bytes())
    blob[-5] ^= 0xFF
    ckpt.path.write_bytes(bytes(blob))
    with notices.collecting() as said:
        assert ckpt.load() is None
    aside = list(tmp_path.glob("c.ckpt.*.corrupt"))
    assert not ckpt.path.exists() and len(aside) == 1
    assert said == [f"{ckpt.path} is corrupt (checksum fails): set aside as {aside[0].name}; the cell starts over"]


# ------------------------------------------------------------------------------ the loader

def test_augmentation_offsets_and_flips_in_range_and_vary():
    b, pad = 256, 4
    # Each image is a unique "coordinate" pattern so the crop offset and flip can be read back.
    rows = torch.arange(32).view(1, 1, 32, 1).expand(b, 1, 32, 32)
    cols = torch.arange(32).view(1, 1, 1, 32).expand(b, 1, 32, 32)
    x = torch.cat([rows + 100, cols + 100, torch.arange(b).view(b, 1, 1, 1).expand(b, 1, 32, 32) % 200], 1).to(torch.uint8)
    out = random_crop_flip(x, pad, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    # the identity channel survives (labels stay aligned with images)
    centre = out[:, 2, 16, 16]
    assert torch.equal(centre, (torch.arange(b) % 200).to(torch.uint8))
    r = out[:, 0, 16, 16].long() - 100 - 16   # row offset in [-pad, pad]
    flipped = out[:, 1, 16, 8] > out[:, 1, 16, 24]  # columns that are never padding
    # unflipped, position 16 shows crop column 16; flipped, crop column 31 - 16 = 15
    c = out[:, 1, 16, 16].long() - 100 - torch.where(flipped, 15, 16)
    assert r.abs().max() <= pad and c.abs().max() <= pad
    assert len(set(r.tolist())) == 2 * pad + 1 and len(set(c.tolist())) == 2 * pad + 1
    assert 0.35 < flipped.float().mean() < 0.65


def test_loader_batches_cover_the_epoch_and_keep_labels():
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 32, 32).contiguous()
    y = torch.arange(100)
    loader = DeviceLoader(x, y, 32, (0, 0, 0), (1 / 255,) * 3, CPU, train=True, augment=False)
    seen = []
    for xb, yb in loader:
        assert torch.equal(xb[:, 0, 0, 0].round().long(), yb)  # image i carries value i
        seen += yb.tolist()
    assert len(seen) == 96 and len(set(seen)) == 96          # last partial batch dropped in training
    evaluation = DeviceLoader(x, y, 32, (0, 0, 0), (1 / 255,) * 3, CPU)
    assert sum(len(b[1]) for b in evaluation) == 100           # evaluation sees every image


def _coordinate_images(b, size):
    """Images whose channel 0 holds the row, channel 1 the column (scaled to 0..255)."""
    ramp = torch.linspace(0, 255, size)
    return torch.stack([ramp.view(size, 1).expand(size, size), ramp.view(1, size).expand(size, size),
                        torch.zeros(size, size)]).expand(b, 3, size, size).contiguous()


def test_scale_jitter_crops_224_of_s_and_flips():
    from vggbench.loader import scale_jitter_crop

    b, size = 400, 64
    out = scale_jitter_crop(_coordinate_images(b, size), size, torch.Generator().manual_seed(0))
    assert out.shape == (b, 3, size, size)
    rows = out[:, 0, :, size // 2]
    span = (rows[:, -1] - rows[:, 0]).abs() / 255  # fraction of the image side the crop covers
    assert span.min() > 224 / 512 - 0.05 and span.max() < 224 / 256 + 0.02   # crop = 224 / S, S in [256, 512]
    assert span.max() - span.min() > 0.3                                       # S varies per image
    cols = out[:, 1, size // 2, :]
    flipped = cols[:, 0] > cols[:, -1]
    assert 0.35 < flipped.float().mean() < 0.65
    assert out.min() >= 0 and out.max() <= 255                                 # inside the image


def test_random_resized_crop_boxes_inside_the_image():
    from vggbench.loader import random_resized_crop

    out = random_resized_crop(_coordinate_images(300, 64), 32, torch.Generator().manual_seed(1))
    assert out.shape == (300, 3, 32, 32)
    span_r = (out[:, 0, -1, 16] - out[:, 0, 0, 16]).abs() / 255
    assert span_r.min() < 0.4 and span_r.max() > 0.8  # areas from 8% to 100% of the image
    assert out.min() >= 0 and out.max() <= 255


def test_chunked_loader_sees_every_image_once_per_epoch():
    # A data set too big for the device: resident_bytes forces chunks of 2 batches.
    n, batch = 100, 8
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    y = torch.arange(n)
    per_image = 3 * 32 * 32
    loader = DeviceLoader(x, y, batch, (0, 0, 0), (1 / 255,) * 3, CPU, train=True, augment=False,
                          resident_bytes=2 * 2 * batch * per_image)
    assert not loader.resident and loader.chunk == 2 * batch
    labels = []
    for xb, yb in loader:
        assert torch.equal(xb[:, 0, 0, 0].round().long(), yb)
        labels += yb.tolist()
    assert len(labels) == n // batch * batch and len(set(labels)) == len(labels)
    again = [yb.tolist() for _, yb in loader]
    assert sum(again, []) != labels  # reshuffled every epoch
    evaluation = DeviceLoader(x, y, batch, (0, 0, 0), (1 / 255,) * 3, CPU, resident_bytes=2 * 2 * batch * per_image)
    assert sorted(sum((yb.tolist() for _, yb in evaluation), [])) == list(range(n))


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown augmentation policy 'mixup'"):
        DeviceLoader(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 2,
                     (0, 0, 0), (1, 1, 1), CPU, policy="mixup")


def test_colour_shift_is_the_pca_of_the_training_pixels_and_off_where_the_recipe_says_off(tiny):
    """Section 3.1's random RGB colour shift (AlexNet's PCA lighting noise): per image, sum_i a_i l_i p_i
    with a_i ~ normal(0, std 0.1) and (l_i, p_i) the eigenpairs of the training pixels' RGB covariance."""
    from vggbench.data import pixel_pca
    from vggbench.loader import COLOUR_STD, colour_shift
    from vggbench.profiles import PROFILES

    g = torch.Generator().manual_seed(0)
    grey = torch.randint(40, 200, (64, 1, 16, 16), generator=g)   # correlated channels, as in photos
    x = (grey + torch.randint(0, 40, (64, 3, 16, 16), generator=g) * torch.tensor([1, 2, 3]).view(1, 3, 1, 1)).to(torch.uint8)
    values, vectors = pixel_pca(x)
    pixels = x.double().div(255).transpose(0, 1).reshape(3, -1)
    cov = torch.cov(pixels, correction=0)
    torch.testing.assert_close((vectors.double() * values.double()) @ vectors.double().T, cov, rtol=1e-4, atol=1e-7)
    assert values[0] > values[1] > values[2] > 0
    # over many draws the shifts have the covariance P diag((0.1 l)^2) P^T and mean 0
    shifts = colour_shift(200_000, values, vectors, torch.Generator().manual_seed(1)).double()
    want = (vectors.double() * (COLOUR_STD * values.double()) ** 2) @ vectors.double().T
    torch.testing.assert_close(torch.cov(shifts.T), want, rtol=0.02, atol=0.02 * want.abs().max().item())
    assert shifts.mean(0).abs().max() < 0.01 * COLOUR_STD * values[0]
    # in the loader: one shift per training image, the same over its pixels, in pixel units; val/test never
    identity = dict(mean=(0, 0, 0), std=(1 / 255,) * 3, device=CPU, channels_last=False, augment=False)
    y = torch.zeros(64, dtype=torch.long)
    plain = next(iter(DeviceLoader(x, y, 64, train=True, seed=3, **identity)))[0]
    shifted = next(iter(DeviceLoader(x, y, 64, train=True, seed=3, colour_pca=(values, vectors), **identity)))[0]
    diff = shifted - plain
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff), atol=1e-3) and diff.abs().amax() > 0.1
    assert torch.equal(plain, x.float()[torch.randperm(64, generator=torch.Generator().manual_seed(3))])   # off: unchanged
    val = next(iter(DeviceLoader(x, y, 64, colour_pca=(values, vectors), **identity)))[0]
    assert torch.equal(val, x.float())
    # the recipe: the paper's (imagenet profile) has it; the others, and the spec's default, do not
    assert {name for name, p in PROFILES.items() if p.train.colour_shift} == {"imagenet"}
    assert "colour_shift" not in identity_fields(SPEC) and identity_fields(SPEC.replace(colour_shift=True))["colour_shift"]
    # the trainer draws on the data's PCA, computed once and kept with the data
    on, off = (train(model(), tiny, SPEC.replace(epochs=1, colour_shift=c), CPU, seed=0) for c in (True, False))
    assert on["history"][0]["train_loss"] != off["history"][0]["train_loss"]
    assert tiny.colour_pca() is tiny.colour_pca()
