"""Pretrained weights and transfer modes: torchvision's VGGs load into vggbench's exactly, nothing loads
partially, the modes train what they say, torchvision's download path works offline from torch.hub's
cache, and the transfer ablation runs end to end on an image folder."""
import hashlib
import os
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from fixtures_data import synthetic_splits
from vggbench import pretrained, trainer, transfer
from vggbench.cells import cells_for
from vggbench.measure import count_params, torch_flops, train_step_flops
from vggbench.models import ModelSpec, build_model
from vggbench.options import Options
from vggbench.pretrained import PretrainedError, Unavailable
from vggbench.trainer import TrainSpec, make_optimizer, train

CPU = torch.device("cpu")
ARCH = pretrained.ARCHITECTURE


def torchvision_file(name: str, path: Path) -> nn.Module:
    """torchvision's VGG `name` with random weights and random BN statistics, saved as a state dict."""
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None).eval()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):  # not the identity: a mapping mix-up must show in the logits
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    torch.save(tv.state_dict(), path)
    return tv


@pytest.fixture(scope="module")
def vgg11(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg11.pth"
    return torchvision_file("vgg11", path), path


def same_logits(tv: nn.Module, ours: nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv.eval()(x), rtol=1e-4, atol=1e-5)


def loaded(path: Path, **spec) -> nn.Module:
    """vggbench's VGG with a file's weights, as `--pretrained FILE` loads them (all layers kept)."""
    model = build_model(**ARCH, **spec)
    pretrained.load_weights(model, pretrained.weights_for(str(path), model.spec), new_head=False)
    return model


def test_vgg11_loads_into_A_exactly_at_224_and_at_other_sizes(vgg11):
    tv, path = vgg11
    same_logits(tv, loaded(path, config="A", num_classes=1000, image_size=224), 224)
    # 64 px: torchvision pools the 2x2 map to 7x7; vggbench folds that pool into its first linear layer
    same_logits(tv, loaded(path, config="A", num_classes=1000, image_size=64), 64)


@pytest.mark.slow
@pytest.mark.parametrize("name,config,bn", [("vgg16", "D", False), ("vgg16_bn", "D", True)])
def test_vgg16_loads_into_D_exactly(name, config, bn, tmp_path):
    tv = torchvision_file(name, tmp_path / f"{name}.pth")
    same_logits(tv, loaded(tmp_path / f"{name}.pth", config=config, batch_norm=bn, num_classes=1000), 224)


def test_new_head_keeps_every_pretrained_layer(vgg11):
    tv, path = vgg11
    model = build_model(config="A", num_classes=3, image_size=32, **ARCH)
    pretrained.load_weights(model, pretrained.weights_for(str(path), model.spec))
    ours, theirs = model.state_dict(), tv.state_dict()
    assert ours["classifier.6.weight"].shape == (3, 4096)  # new, for the data's 3 classes
    assert torch.equal(ours["classifier.0.weight"], pretrained.fold_pool(theirs["classifier.0.weight"], 1))
    assert ours["classifier.0.weight"].shape == (4096, 512)  # 32 px: a 1x1 map
    for k, v in theirs.items():
        if not k.startswith(("classifier.6.", "classifier.0.weight")):
            assert torch.equal(ours[k], v), k


def test_a_mismatch_is_an_error_not_a_partial_load(vgg11):
    state = vgg11[0].state_dict()
    model = build_model(config="A", num_classes=3, image_size=32, **ARCH)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cases = [({k: v for k, v in state.items() if k != "features.3.weight"}, "x does not fit A: missing features.3.weight"),
             ({**state, "features.0.weight": torch.zeros(64, 3, 5, 5)},
              "x does not fit A: features.0.weight: (64, 3, 5, 5) where A has (64, 3, 3, 3)"),
             ({**state, "features.30.weight": torch.zeros(1)}, "x does not fit A: unexpected features.30.weight")]
    for broken, message in cases:
        with pytest.raises(PretrainedError) as err:
            pretrained.load_into(model, broken, "x")
        assert str(err.value) == message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded


def test_what_a_source_has_no_weights_for_is_said(vgg11, tmp_path):
    path = vgg11[1]
    d = ModelSpec(config="D", **ARCH)
    with pytest.raises(Unavailable, match=r"^vgg11.pth holds vgg11 \(A\) weights; D needs vgg16 weights"):
        pretrained.weights_for(str(path), d)
    with pytest.raises(Unavailable, match=r"holds vgg11 \(A\) weights; A-bn needs vgg11_bn weights"):
        pretrained.weights_for(str(path), d.replace(config="A", batch_norm=True))
    for config in ("C", "A-LRN"):
        with pytest.raises(Unavailable, match=f"^torchvision publishes no ImageNet weights for {config}: only A, B, D, E"):
            pretrained.weights_for("torchvision", d.replace(config=config))
    with pytest.raises(Unavailable, match=r"the paper's head at width 1 with 3x3 kernels, not \{'width': 0.5\}"):
        pretrained.weights_for("torchvision", d.replace(width=0.5))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(PretrainedError, match="notes.txt: cannot be read as a state dict"):
        pretrained.weights_for(str(tmp_path / "notes.txt"), d)
    with pytest.raises(PretrainedError, match=r"^/no/such.pth: no such file; pass torchvision"):
        pretrained.weights_for("/no/such.pth", d)


def test_the_weights_are_part_of_a_cells_identity(vgg11):
    path = vgg11[1]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with_file = {c.case: c for c in cells_for("transfer", Options(pretrained=str(path)))}
    without = {c.case: c for c in cells_for("transfer", Options())}
    assert with_file["A-finetune"].config()["pretrained"] == {"source": "file", "sha256": sha}
    assert with_file["A-scratch"].weights is None and with_file["A-scratch"].id == without["A-scratch"].id
    assert with_file["A-finetune"].id != cells_for("transfer", Options(pretrained="torchvision"))[5].id
    assert with_file["D-finetune"].skip.startswith("vgg11.pth holds vgg11 (A) weights; D needs vgg16")
    assert without["A-scratch"].skip.startswith("the transfer ablation needs pretrained weights: pass --pretrained")
    # where the file sits is not: the same weights anywhere are the same cell
    w = with_file["A-finetune"].weights
    assert pretrained.Weights("file", w.name, "other.pth", "/elsewhere").identity() == w.identity()


def test_torchvision_weights_come_from_the_torch_hub_cache_offline(vgg11, tmp_path, monkeypatch):
    tv, path = vgg11
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # nothing may touch the network
    spec = ModelSpec(config="A", num_classes=1000, image_size=32, **ARCH)
    enum = pretrained.torchvision_weights(spec)
    assert enum is torchvision.models.VGG11_Weights.IMAGENET1K_V1
    assert pretrained.torchvision_weights(spec.replace(config="D", batch_norm=True)) is \
        torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1
    weights = pretrained.weights_for("torchvision", spec)
    assert weights.identity() == {"source": "torchvision", "weights": "VGG11_Weights.IMAGENET1K_V1",
                                  "file": "vgg11-8a719046.pth"}
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "vgg11-8a719046.pth"
    assert pretrained.cache_path(enum) == cache
    with pytest.raises(PretrainedError) as err:
        pretrained.state_dict(weights)
    assert str(err.value) == (
        "cannot download torchvision's VGG11_Weights.IMAGENET1K_V1 (https://download.pytorch.org/models/"
        "vgg11-8a719046.pth: offline (test)); offline? pass a local file with --pretrained FILE, or put "
        f"vgg11-8a719046.pth into {cache.parent}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path, cache)  # as if downloaded earlier: torchvision reads its cache, no network
    model = build_model(spec)
    pretrained.load_weights(model, weights, new_head=False)
    same_logits(tv, model, 32)
    assert pretrained.normalization() == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# --- transfer modes, on a small VGG (the modes do not depend on the weights' origin)

@pytest.fixture(scope="module")
def tiny():
    return synthetic_splits(160, 40, 40)


def small(mode: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(config="A", batch_norm=True, width=0.125, image_size=32, num_classes=10, head="paper")
    return transfer.freeze(model, mode)


TRAINED = {"scratch": ("features.", "classifier."), "finetune": ("features.", "classifier."),
           "frozen": ("classifier.",), "linear": ("classifier.6.",)}


@pytest.mark.parametrize("mode", transfer.MODES)
def test_a_mode_trains_its_layers_and_leaves_the_frozen_ones_unchanged(mode, tiny):
    model = small(mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, tiny, TrainSpec(epochs=1, batch_size=32, lr=0.05, augment=False, transfer=mode, stall_epochs=99), CPU)
    for k, v in model.state_dict().items():  # BN running statistics included: frozen BN stays in eval mode
        assert torch.equal(before[k], v) != k.startswith(TRAINED[mode]), k


def test_trainable_params_and_the_optimiser_per_mode():
    total = count_params(small("scratch"))["params"]
    head = sum(p.numel() for p in small("scratch").classifier.parameters())
    counts = {m: count_params(small(m)) for m in transfer.MODES}
    assert {m: c["trainable_params"] for m, c in counts.items()} == \
        {"scratch": total, "finetune": total, "frozen": head, "linear": 512 * 10 + 10}
    assert {c["params"] for c in counts.values()} == {total}  # the model is the same size in every mode
    for mode in transfer.MODES:
        model = small(mode)
        opt = make_optimizer(model, TrainSpec(transfer=mode))
        assert sorted(id(p) for g in opt.param_groups for p in g["params"]) == \
            sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_pretrained_layers_can_train_at_a_smaller_learning_rate():
    model = small("finetune")
    opt = make_optimizer(model, TrainSpec(transfer="finetune", lr=0.05, pretrained_lr_scale=0.1))
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert opt.param_groups[0]["lr"] == 0.05  # the new layer's group first: history's "lr" is the base rate
    assert {lr[id(p)] for p in model.classifier[-1].parameters()} == {0.05}
    assert {round(lr[id(p)], 12) for p in list(model.features.parameters()) + list(model.classifier[0].parameters())} \
        == {0.005}
    with pytest.raises(trainer.TrainSpecError, match="unknown transfer 'partial': choose one of scratch, finetune"):
        TrainSpec(transfer="partial")


def test_pretrained_modes_normalise_with_imagenet_statistics(tiny, monkeypatch):
    seen = []

    class Recording(trainer.DeviceLoader):
        def __init__(self, *args, mean, std, **kw):
            seen.append((tuple(mean), tuple(std)))
            super().__init__(*args, mean=mean, std=std, **kw)

    monkeypatch.setattr(trainer, "DeviceLoader", Recording)
    for mode in ("scratch", "linear"):
        train(small(mode), tiny, TrainSpec(epochs=1, batch_size=80, augment=False, transfer=mode), CPU)
    assert set(seen[:3]) == {(tiny.mean, tiny.std)} and set(seen[3:]) == {pretrained.normalization()}


def test_frozen_layers_cut_the_counted_training_flops():
    forward = torch_flops(small("scratch"))
    full, linear = train_step_flops(small("finetune")), train_step_flops(small("linear"))
    assert 2 * forward < full <= 3 * forward  # forward + both backward products (no input gradient of conv1)
    assert forward < linear < 1.01 * forward  # forward + the last layer's weight gradient only


# --- the ablation end to end

def test_without_pretrained_the_transfer_ablation_is_skipped_saying_why(tmp_path, ablations):
    run = ablations("-rs", "-k", "transfer", results=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SKIPPED [8] ablations/test_transfer.py: the transfer ablation needs pretrained weights: pass " \
           "--pretrained torchvision or --pretrained FILE" in run.stdout
    assert not list(tmp_path.glob("runs/*.json"))  # nothing ran (selection.json names the skipped cells for `vggbench status`)


@pytest.mark.slow
def test_the_transfer_ablation_runs_on_an_image_folder_with_a_weights_file(vgg11, tmp_path, ablations):
    from fixtures_data import image_folder

    tv, path = vgg11
    folder = image_folder(tmp_path / "flowers", per_class=20, classes=3)
    run = ablations("-rs", "-k", "transfer", "--pretrained", str(path), "--dataset", "imagefolder", "--data-dir",
                    str(folder), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--batch-size", "8",
                    results=tmp_path / "results")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed, 4 skipped" in run.stdout  # the vgg11 file has no weights for D: D's cases say so
    assert "vgg11.pth holds vgg11 (A) weights; D needs vgg16 weights" in run.stdout
    table = pd.read_csv(tmp_path / "results" / "transfer.csv")
    assert table["case"].tolist() == ["A-scratch", "A-finetune", "A-frozen", "A-linear"]
    assert table["transfer"].tolist() == list(transfer.MODES)
    shapes = {k: v.numel() for k, v in tv.state_dict().items()}
    features = sum(n for k, n in shapes.items() if k.startswith("features."))
    head = (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 3 + 3)  # 32 px: a 1x1 map; 3 classes
    assert table["params"].tolist() == [features + head] * 4
    assert table["trainable_params"].tolist() == [features + head, features + head, head, 4096 * 3 + 3]
