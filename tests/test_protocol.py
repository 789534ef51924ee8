"""The paper's protocol as cells (section 3.1): deeper nets started from a trained A, the S = 384 net
from the S = 256 one at a tenth of the rate, training scales, and evaluations that are results of one
training cell. The test-time methods themselves: test_evaluation.py."""
import dataclasses

import pytest
import torch

from helpers import FAST
from vggbench import records, run
from vggbench.cells import cells_for
from vggbench.loader import DeviceLoader
from vggbench.models import INIT_STD, build_model
from vggbench.options import Options
from vggbench.warmstart import FROM_A, copy_layers, layer_names

OPTS = Options(epochs=1, train_subset=160, test_subset=100)


def by_case(cells, case, seed=0):
    return next(c for c in cells if c.case == case and c.seed == seed)


def test_layer_names_are_the_papers():
    d = layer_names(build_model(config="D", width=0.125, num_classes=10, image_size=32, head="compact"))
    assert list(d) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
                       "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8"]
    a = layer_names(build_model(config="A", width=0.125, num_classes=10, image_size=32, head="linear"))
    assert list(a) == ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2", "fc8"]


def test_from_a_copies_exactly_the_mapped_layers_and_leaves_the_rest_at_their_init():
    spec = dict(width=0.125, num_classes=10, image_size=32, head="compact")
    torch.manual_seed(1)
    a = build_model(config="A", init="kaiming", **spec)  # stands for a trained A: other values than D's init
    torch.manual_seed(0)
    d = build_model(config="D", init="from-A", **spec)
    torch.manual_seed(0)
    fresh = build_model(config="D", init="from-A", **spec)
    assert copy_layers(d, a, "from-A") == list(FROM_A)
    ours, theirs, init = layer_names(d), layer_names(a), layer_names(fresh)
    for name, (layer,) in ours.items():
        source = theirs[name][0] if name in FROM_A else init[name][0]
        assert torch.equal(layer.weight, source.weight) and torch.equal(layer.bias, source.bias), name
    # the random layers are the paper's normal init (std 0.01); the copied ones are A's
    assert abs(ours["conv3_3"][0].weight.std().item() - INIT_STD["from-A"]) < 0.001


def test_a_shape_mismatch_is_an_error_not_a_partial_copy():
    a = build_model(config="A", width=0.25, num_classes=10, image_size=32, head="linear")
    d = build_model(config="D", width=0.125, num_classes=10, image_size=32, head="linear")
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(ValueError, match="layer conv1_1 is a 3x3 conv 3->8 here but a 3x3 conv 3->16 in the net"):
        copy_layers(d, a, "from-A")
    assert all(torch.equal(v, d.state_dict()[k]) for k, v in before.items())


def test_paper_init_is_read_two_ways_and_each_says_its_std():
    assert INIT_STD == {"paper": 0.01, "paper-variance": 0.1, "from-A": 0.01}
    for init, std in (("paper", 0.01), ("paper-variance", 0.1)):
        m = build_model(config="A", init=init, width=1.0, num_classes=10, image_size=32, head="linear")
        w = m.features[3].weight  # conv2_1: 73,728 weights
        assert abs(w.std().item() - std) < 0.02 * std and w.mean().abs() < 0.02 * std


def test_from_a_cells_start_from_net_a_with_the_same_settings_at_the_same_rate():
    cells = cells_for("init", OPTS)
    d = by_case(cells, "D-from-A")
    assert d.start.model == d.model.replace(config="A", init="paper")
    assert (d.start.train, d.start.data, d.start.seed, d.start_layers) == (d.train, d.data, d.seed, "from-A")
    assert d.train.lr == by_case(cells, "D-paper").train.lr  # the paper: the copied layers' rate is not lowered
    assert by_case(cells, "E-from-A").start.id == d.start.id  # one A for both
    assert d.id not in {c.id for c in cells if c.case != "D-from-A"} and d.config()["start"] == {
        "cell": d.start.id, "layers": "from-A"}
    # --init from-A on the depth ablation: B-E start from A, A and A-LRN keep the paper's random init
    depth = {c.case: c for c in cells_for("depth", dataclasses.replace(OPTS, init="from-A"))}
    assert depth["A"].start is None and depth["A"].model.init == "paper" and depth["A-LRN"].model.init == "paper"
    assert all(depth[c].start.id == depth["A"].id for c in ("B", "C", "D", "E"))


def test_scale_cases_map_the_papers_scales_and_s384_starts_from_s256_at_a_tenth():
    cells = cells_for("scale", OPTS)
    s256, s384, jit = (by_case(cells, f"C-{s}") for s in ("S256", "S384", "S256-512"))
    # smoke's 32-pixel crop: the paper's 256, 384, 512 at 224 become 37, 55, 73 (proportional)
    assert (s256.train.scale, s384.train.scale, jit.train.scale) == ((37, 37), (55, 55), (37, 73))
    assert s384.start == s256.training_cell() and s384.start_layers == "all"
    assert s384.train.lr == pytest.approx(s256.train.lr / 10)
    assert s256.evaluate == ("single_scale",) and s256.start is None
    # the evaluation ablation's cells evaluate the very training cells of the scale ablation
    assert jit.start == s384.training_cell() and jit.train.lr == pytest.approx(s384.train.lr)
    ev = by_case(cells_for("evaluation", OPTS), "D-S256-512")
    assert dataclasses.replace(ev.training_cell(), ablation="scale").id == by_case(cells, "D-S256-512").training_cell().id
    assert ev.evaluate == ("single_scale", "multi_scale", "multi_crop", "dense_multi_crop")
    # Table 4: every net of the scale ablation (fixed S too) is also tested multi-scale; no training of its own
    evaluation = cells_for("evaluation", OPTS)
    assert sorted(e.case for e in evaluation) == sorted(c.case for c in cells)
    for e in evaluation:
        assert dataclasses.replace(e, evaluate=()).id == dataclasses.replace(by_case(cells, e.case), evaluate=()).id
        assert e.evaluate[:2] == ("single_scale", "multi_scale")


def test_evaluation_at_the_training_scale_of_the_stored_size_is_the_image_itself():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    plain = DeviceLoader(x, torch.zeros(4, dtype=torch.long), 4, (0, 0, 0), (1 / 255,) * 3, torch.device("cpu"),
                         channels_last=False)
    scaled = DeviceLoader(x, torch.zeros(4, dtype=torch.long), 4, (0, 0, 0), (1 / 255,) * 3, torch.device("cpu"),
                          channels_last=False, scale=(32, 32), crop=32)
    torch.testing.assert_close(next(iter(scaled))[0], next(iter(plain))[0], atol=1e-3, rtol=0)
    train = DeviceLoader(x, torch.zeros(4, dtype=torch.long), 4, (0, 0, 0), (1 / 255,) * 3, torch.device("cpu"),
                         train=True, scale=(37, 73), crop=32)
    assert next(iter(train))[0].shape == (4, 3, 32, 32)


def test_a_from_a_cell_starts_from_a_s_trained_weights_at_step_0(tmp_path, monkeypatch):
    at_start = {}
    real_train = run.train

    def spy(model, data, spec, device, **kw):
        at_start.setdefault(id(model), {k: v.clone() for k, v in model.state_dict().items()})
        return real_train(model, data, spec, device, **kw)

    monkeypatch.setattr(run, "train", spy)
    d = by_case(cells_for("init", OPTS), "D-from-A")
    record = run.run_cell(d, tmp_path)
    assert record["status"] != "error", record.get("error")
    mapped = [n for n in FROM_A if n in layer_names(build_model(d.model))]  # smoke's one-layer head: fc8 only
    assert mapped == ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc8"]
    assert record["start"]["cell_id"] == d.start.id and record["start"]["layers"] == mapped
    a_weights = torch.load(records.weights_path(tmp_path, d.start.id), weights_only=True)
    a = build_model(d.start.model)
    a.load_state_dict(a_weights)
    d_at_0 = build_model(d.model)
    d_at_0.load_state_dict(list(at_start.values())[-1])  # the D net as training began
    ours, theirs = layer_names(d_at_0), layer_names(a)
    for name in mapped:
        assert torch.equal(ours[name][0].weight, theirs[name][0].weight), name
    torch.manual_seed(d.seed)
    fresh = layer_names(build_model(d.model))
    for name in set(ours) - set(mapped):
        assert torch.equal(ours[name][0].weight, fresh[name][0].weight), name
    assert record["init_std"] == 0.01


def _traced(ablations, tmp_path, *args):
    trace = tmp_path / "trace.txt"
    done = ablations("-p", "no:randomly", "-k", "from-A", *FAST, *args, results=tmp_path / "results",
                     env={"VGGBENCH_INJECT": f"trace={trace}"})
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(trace.read_text().split("\n")[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("how", [["-n", "2"], ["--launcher", "local"]], ids=["xdist", "local-launcher"])
def test_net_a_is_computed_once_for_every_net_that_starts_from_it(tmp_path, how, ablations):
    cells = cells_for("init", Options(epochs=1, train_subset=160, test_subset=100))
    d, e = by_case(cells, "D-from-A"), by_case(cells, "E-from-A")
    assert _traced(ablations, tmp_path, *how) == sorted([f"A {d.start.id}", f"D-from-A {d.id}", f"E-from-A {e.id}"])


def test_data_is_cached_large_enough_for_the_largest_scale_but_never_above_its_originals():
    from vggbench.data.sources import cache_size
    assert cache_size("imagenet", 512) == 512 and cache_size("imagefolder", 146) == 146  # originals vary: large
    assert cache_size("cifar10", 73) == 32 and cache_size("tiny-imagenet", 146) == 64    # no larger copy exists
    scale = cells_for("scale", OPTS)
    # smoke's synthetic glyphs are drawn at any size: one copy at S = 512 -> 73 pixels for every scale case
    assert {c.data.image_size for c in scale} == {73} and all(c.model.image_size == 32 for c in scale)
    assert {c.data.image_size for c in cells_for("depth", OPTS)} == {32}


def test_the_scale_copy_is_built_only_for_cells_whose_id_is_needed(tmp_path, monkeypatch):
    """`--case depth:A` (or --collect-only) collects the scale ablation's cells too: its larger copy
    (73 px here, 512 under --profile imagenet) is built only when a scale cell's id is first asked
    for (a selected cell runs, or its table is written), never by collecting."""
    from fixtures_data import image_folder
    from vggbench.data import registry, sources

    root = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    opts = Options(dataset="imagefolder", data_dir=str(root), cache_dir=str(tmp_path / "cache"), epochs=1)
    built, real_build = [], sources._build
    monkeypatch.setattr(sources, "_build", lambda spec, *a: (built.append(spec.image_size), real_build(spec, *a)))
    registry._load_data.cache_clear()
    cells = cells_for("scale", opts) + cells_for("depth", opts)
    assert built == [32]
    ids = {c.id for c in cells}  # what running a scale cell asks first
    assert built == [32, 73] and len(ids) == len(cells)
    # the id is the one the larger copy's content gives
    s = next(c for c in cells if c.train.scale is not None)
    large = registry.load_data(s.data)
    assert s.config()["data"] == s.data.replace(fingerprint=large.fingerprint).identity()
