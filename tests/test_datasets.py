"""Real-dataset sources (vggbench.sources): every layout on a generated fixture, the split rules,
decoding to RGB, the clear error for a corrupt image, the cache, and the offline hub."""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vggbench import cli, notices
from vggbench.data import registry as vggdata
from vggbench.data import sources
from vggbench.data import DATASETS, DataError, DataSpec, load_data

from helpers import CIFAR10
from fixtures_data import (CLASSES, COLORS, cifar_pickles, hub_parquet, image_folder, tiny_imagenet, write_corrupt,
                           write_image)



@pytest.fixture(autouse=True)
def fresh_memo():
    """load_data memoises per process; these tests change the data between calls."""
    vggdata._load_data.cache_clear()


def load(tmp_path: Path, dataset: str, data_dir: Path | str | None, size: int = 32, **kw):
    spec = DataSpec(dataset, size, data_dir=str(data_dir) if data_dir else None, cache_dir=str(tmp_path / "cache"), **kw)
    return sources.load(spec)


def cache_entries(tmp_path: Path) -> list[Path]:
    """What the cache holds beside its .locks/ folder: complete entries, or leftovers of a failed build."""
    cache = tmp_path / "cache"
    return sorted(p for p in cache.iterdir() if p.name != ".locks") if cache.exists() else []


def assert_consistent(data, grays: int = 0) -> None:
    """uint8 N x 3 x H x W, labels in range, and each image still shows its class colour
    (grayscale images, R = G = B, are counted instead)."""
    seen_gray = 0
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y), (data.test_x, data.test_y)):
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, data.image_size, data.image_size)
        assert y.dtype == torch.int64 and len(x) == len(y) > 0
        mean = x.double().mean((2, 3))
        gray = (mean.max(1).values - mean.min(1).values) < 3
        seen_gray += int(gray.sum())
        nearest = torch.cdist(mean, torch.tensor(COLORS, dtype=torch.float64)).argmin(1)
        assert torch.equal(nearest[~gray], y[~gray])
    assert seen_gray == grays


# ------------------------------------------------------------------------------ decoding

@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "RGB"])
def test_decode_makes_rgb_of_the_size(tmp_path, mode):
    from fixtures_data import write_image

    path = write_image(tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}", (200, 100, 50), (40, 20), mode)
    img = sources.decode(str(path), 16)
    assert img.shape == (3, 16, 16) and img.dtype == np.uint8
    if mode == "L":
        assert (img[0] == img[1]).all() and (img[1] == img[2]).all()
    else:
        assert np.abs(img.reshape(3, -1).mean(1) - (200, 100, 50)).max() < 8


# ------------------------------------------------------------------------------ layouts

def test_image_folder(tmp_path):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    data = load(tmp_path, "imagefolder", root)
    assert data.classes == CLASSES[:3]
    # train only: test = a stratified tenth, then val = a tenth of the rest (at least one per class)
    assert data.sizes() == {"train": 24, "val": 3, "test": 3}
    assert_consistent(data, grays=3)  # one grayscale image per class
    assert "image folder" in data.source


def test_image_folder_with_split_folders(tmp_path):
    for split, n in (("train", 8), ("val", 3), ("test", 2)):
        image_folder(tmp_path / "tree" / split, per_class=n, classes=2)
    data = load(tmp_path, "imagefolder", tmp_path / "tree")
    assert data.sizes() == {"train": 16, "val": 6, "test": 4}
    assert_consistent(data, grays=6)


def test_tiny_imagenet_tree(tmp_path):
    root = tiny_imagenet(tmp_path / "data", train_per_class=6, val=15)
    data = load(tmp_path, "imagefolder", root, size=64)  # the layout, not the name: 3 classes are not Tiny ImageNet
    assert data.classes == CLASSES[:3]  # words.txt, first name
    # no labelled test split: the labelled val is divided 8:2 into val and test
    assert data.sizes() == {"train": 18, "val": 12, "test": 3}
    assert data.image_size == 64
    assert_consistent(data, grays=1)  # the grayscale JPEG became RGB
    assert "tiny-imagenet-200 tree" in data.source


@pytest.mark.parametrize("image_col, splits, expect", [
    ("image", {"train": 30, "valid": 15}, {"train": 30, "val": 12, "test": 3}),  # zh-plus/tiny-imagenet's names
    ("img", {"train": 30, "test": 9}, {"train": 27, "val": 3, "test": 9}),      # uoft-cs/cifar10's names
])
def test_hub_parquet_layout(tmp_path, image_col, splits, expect):
    root = hub_parquet(tmp_path / "data", image_col, splits=splits)
    data = load(tmp_path, "imagefolder", root)
    assert data.classes == CLASSES[:3]
    assert data.sizes() == expect
    assert_consistent(data, grays=len(splits))  # row 1 of every split is grayscale
    [entry] = cache_entries(tmp_path)
    assert not (entry / "scratch").exists()  # load_dataset's Arrow copy is gone


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar-100-python"])
def test_cifar_pickles(tmp_path, layout):
    root, truth = cifar_pickles(tmp_path / "data", layout, per_batch=20)
    data = load(tmp_path, "imagefolder", root)  # 4 classes: not CIFAR-10's (test_named_dataset_is_checked)
    n_train = 100 if layout == "cifar-10-batches-py" else 20
    n_val = max(4, n_train // 10)
    assert data.sizes() == {"train": n_train - n_val, "val": n_val, "test": 20}
    assert data.classes == CLASSES[:4]
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y), (data.test_x, data.test_y)):
        assert [truth[img.numpy().tobytes()] for img in x] == y.tolist()  # pixels exact, labels aligned


# ------------------------------------------------------------------------------ split rules

def test_cifar_style_val_is_carved_from_train_stratified_and_fixed():
    labels = torch.arange(10).repeat(600)  # 6000 train images, 10 classes
    listing = sources.Listing([str(i) for i in range(10)], {"train": sources.Split(labels, None),
                                                           "test": sources.Split(labels[:100], None)})
    rows, notes = sources.plan_splits(listing)
    train, val = rows["train"][1], rows["val"][1]
    assert (len(train), len(val), len(rows["test"][1])) == (5400, 600, 100)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [60] * 10
    assert torch.equal(sources.plan_splits(listing)[0]["val"][1], val)  # the same every time
    assert "val: 600 of the 6000 train images" in notes[0]


def test_a_source_with_all_three_splits_is_used_as_given():
    split = sources.Split(torch.arange(4).repeat(5), None)
    rows, notes = sources.plan_splits(sources.Listing(list("abcd"), {"train": split, "val": split, "test": split}))
    assert [len(i) for _, i in rows.values()] == [20, 20, 20] and notes == []


# ------------------------------------------------------------------------------ bad images, the cache

def test_corrupt_image_is_a_clear_error_and_leaves_no_cache(tmp_path):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    bad = write_corrupt(root / "sea" / "broken.jpg")
    with pytest.raises(DataError) as err:
        load(tmp_path, "imagefolder", root)
    message = str(err.value)
    assert str(bad) in message and "1 of 31 images" in message and "--skip-bad" in message
    assert "\n" not in message
    assert cache_entries(tmp_path) == []

    with pytest.warns(UserWarning, match="1 of 31 images"):
        data = load(tmp_path, "imagefolder", root, skip_bad=True)
    assert sum(data.sizes().values()) == 30
    assert "1 undecodable images skipped" in data.source
    assert_consistent(data, grays=3)


def test_second_load_comes_from_the_cache_and_a_changed_source_is_decoded_again(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=2)
    first = load(tmp_path, "imagefolder", root)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(sources, "decode", no_decoding)
        t0 = time.perf_counter()
        again = load(tmp_path, "imagefolder", root)
        assert time.perf_counter() - t0 < 1
    assert torch.equal(first.train_x, again.train_x) and first.mean == again.mean
    assert len(cache_entries(tmp_path)) == 1

    image_folder(tmp_path / "flowers", per_class=11, classes=2)  # one more image per class
    assert sum(load(tmp_path, "imagefolder", root).sizes().values()) == 22
    assert len(cache_entries(tmp_path)) == 2


def test_mean_and_std_are_those_of_the_train_split(tmp_path):
    data = load(tmp_path, "imagefolder", image_folder(tmp_path / "flowers", per_class=10, classes=3))
    x = data.train_x.double() / 255
    assert np.allclose(data.mean, x.mean((0, 2, 3)).tolist(), atol=1e-6)
    assert np.allclose(data.std, x.std((0, 2, 3), unbiased=False).tolist(), atol=1e-6)


# ------------------------------------------------------------------------------ the hub, offline

@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.mark.parametrize("why", ["HF_HUB_OFFLINE", "no network"])
def test_uncached_hub_id_fails_fast_with_the_way_out(tmp_path, monkeypatch, empty_hf_cache, why):
    if why == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        import datasets

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(sources, "_hub_reachable", lambda timeout=3.0: False)
    for data_dir in (None, "vggbench-tests/no-such-dataset"):  # the default hub id, then a given one
        for _ in range(2):  # and it stays fast
            t0 = time.perf_counter()
            with pytest.raises(DataError, match="--data-dir PATH") as err:
                load(tmp_path, "cifar10", data_dir)
            assert time.perf_counter() - t0 < 10
    assert "not in the Hugging Face cache" in str(err.value)
    assert ("HF_HUB_OFFLINE is set" if why == "HF_HUB_OFFLINE" else "cannot be reached") in str(err.value)
    assert cache_entries(tmp_path) == []


def test_missing_data_dir_and_imagefolder_without_one_are_clear(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load(tmp_path, "cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="imagefolder needs --data-dir"):
        load(tmp_path, "imagefolder", None)


# ------------------------------------------------------------------------------ registry, command line

def test_every_dataset_is_registered():
    assert {"synthetic", "cifar10", "cifar100", "tiny-imagenet", "imagenet", "imagefolder"} <= set(DATASETS)


@pytest.mark.parametrize("profile", ["cifar10", "tiny-imagenet", "imagenet"])
def test_real_profiles_load_at_their_size(tmp_path, profile):
    from vggbench.profiles import PROFILES

    p = PROFILES[profile]
    root = image_folder(tmp_path / "tree", per_class=10, classes=2)
    data = load_data(p.data.replace(dataset="imagefolder", data_dir=str(root), cache_dir=str(tmp_path / "cache")))
    assert data.image_size == p.model.image_size
    with pytest.raises(DataError, match=f"has 2 classes, but {profile} has {p.model.num_classes}: give the {profile} "
                       "data, or --dataset imagefolder"):  # 2 classes under the profile's name
        load_data(p.data.replace(data_dir=str(root), cache_dir=str(tmp_path / "cache")))


def test_load_data_memo_tells_data_dirs_apart(tmp_path):
    a = image_folder(tmp_path / "a", per_class=10, classes=2)
    b = image_folder(tmp_path / "b", per_class=10, classes=3)
    spec = DataSpec("imagefolder", 32, cache_dir=str(tmp_path / "cache"))
    assert load_data(spec.replace(data_dir=str(a))).num_classes == 2
    assert load_data(spec.replace(data_dir=str(b))).num_classes == 3


def test_cli_data_prepare(tmp_path, capsys):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    args = ["data", "prepare", "imagefolder", "--data-dir", str(root), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "imagefolder: 3 classes, 32x32, train 24 / val 3 / test 3" in out and "took" in out

    write_corrupt(root / "sea" / "broken.jpg")
    vggdata._load_data.cache_clear()  # a new command is a new process
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert err.startswith("vggbench data: error: 1 of 31 images") and "broken.jpg" in err
    with pytest.warns(UserWarning):
        assert cli.main(args + ["--skip-bad"]) == 0
    assert "train 24 / val 3 / test 3" in capsys.readouterr().out


# ------------------------------------------------------------------------------ data that is not what it says

def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_named_dataset_is_checked_against_its_data(tmp_path):
    """--dataset cifar100 (or tiny-imagenet) on a CIFAR-10 copy, cifar10 on a folder of anything:
    one line that says what to do, and no cache entry."""
    root, _ = cifar_pickles(tmp_path / "c10", per_batch=20, classes=10, names=list(sources.CIFAR10_NAMES))
    assert load(tmp_path, "cifar10", root).classes == list(sources.CIFAR10_NAMES)
    for dataset, count in (("cifar100", 100), ("tiny-imagenet", 200)):
        with pytest.raises(DataError, match=f"has 10 classes, but {dataset} has {count}: give the {dataset} data, "
                                            "or --dataset imagefolder"):
            load(tmp_path, dataset, root)
    others = image_folder(tmp_path / "others", per_class=2, classes=2)
    for c in range(2, 10):
        for i in range(2):
            write_image(others / f"class{c}" / f"{i}.png", COLORS[c % 4])
    with pytest.raises(DataError, match=r"classes \(apple, class2, class3, class4, ...\) are not cifar10's \(airplane"):
        load(tmp_path, "cifar10", others)
    big = tmp_path / "big"
    for c, name in enumerate(sources.CIFAR10_NAMES):
        for i in range(2):
            write_image(big / name / f"{i}.png", COLORS[c % 4], (64, 64))
    with pytest.raises(DataError, match="has 64px images, but cifar10's are 32px"):
        load(tmp_path, "cifar10", big)
    assert len(cache_entries(tmp_path)) == 1  # the one cifar10 entry


def test_hidden_folders_are_never_classes_and_empty_ones_are_an_error(tmp_path):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    write_image(root / ".ipynb_checkpoints" / "x-checkpoint.png", COLORS[0])
    write_image(root / "sea" / ".ipynb_checkpoints" / "y.png", COLORS[0])  # not a sea image either
    write_image(root / "sea" / "._000.png", COLORS[0])  # macOS resource fork
    (root / ".git").mkdir()
    data = load(tmp_path, "imagefolder", root)
    assert data.classes == CLASSES[:3] and sum(data.sizes().values()) == 30
    (root / "weeds").mkdir()
    with pytest.raises(DataError, match="weeds: a class folder without images .*: add its images or remove it"):
        load(tmp_path, "imagefolder", root)


def test_a_repository_is_not_a_dataset(tmp_path):
    repo = Path(__file__).resolve().parents[1]  # classes .git, ablations, tests ... once
    with pytest.raises(DataError, match="ablations: a class folder without images"):
        load(tmp_path, "imagefolder", repo)


def test_a_split_with_fewer_images_than_classes_is_an_error(tmp_path):
    image_folder(tmp_path / "tree" / "train", per_class=8, classes=3)
    image_folder(tmp_path / "tree" / "test", per_class=2, classes=3)
    write_image(tmp_path / "tree" / "val" / CLASSES[0] / "0.png", COLORS[0])
    write_image(tmp_path / "tree" / "val" / CLASSES[1] / "0.png", COLORS[1])
    with pytest.raises(DataError, match=r"too few images for 3 classes: val 2 \(at least one per class in each split\)"):
        load(tmp_path, "imagefolder", tmp_path / "tree")


def test_cifar_pickles_of_python3_and_without_labels(tmp_path):
    root, truth = cifar_pickles(tmp_path / "py3", per_batch=20, names=[c.encode() for c in CLASSES[:4]])
    assert load(tmp_path, "imagefolder", root).classes == CLASSES[:4]  # bytes names read as text
    broken, _ = cifar_pickles(tmp_path / "broken", per_batch=20)
    batch = broken / "cifar-10-batches-py" / "data_batch_3"
    data = pickle.loads(batch.read_bytes())
    del data["labels"]
    batch.write_bytes(pickle.dumps(data))
    with pytest.raises(DataError, match=f"{batch}: no 'labels' key \\(it has data, batch_label\\): not a CIFAR pickle"):
        load(tmp_path, "imagefolder", broken)


# ------------------------------------------------------------------------------ a cache that is not what it was

def test_data_rewritten_in_place_with_its_mtimes_restored_is_decoded_again(tmp_path, monkeypatch, capsys):
    """Other pixels of the same byte size (BMP), mtimes restored as cp -p / rsync -a / tar x do: the
    cache entry is not reused (inode and ctime in its key); and where even those cannot tell (the
    key's identity forced equal below), --verify-data decodes again and replaces the entry."""
    root = tmp_path / "flowers"
    for c in range(2):
        for i in range(10):
            write_image(root / CLASSES[c] / f"{i}.bmp", COLORS[c], fmt="BMP")

    def rewrite(shift: int):
        for path in sorted(root.rglob("*.bmp")):
            st = path.stat()
            size = path.stat().st_size
            write_image(path, [(v + shift) % 256 for v in COLORS[CLASSES.index(path.parent.name)]], fmt="BMP")
            assert path.stat().st_size == size
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    first = load(tmp_path, "imagefolder", root)
    rewrite(7)
    vggdata._load_data.cache_clear()
    second = load(tmp_path, "imagefolder", root)
    assert second.fingerprint != first.fingerprint and len(cache_entries(tmp_path)) == 2
    assert not torch.equal(first.train_x, second.train_x)

    monkeypatch.setattr(sources, "_tree_identity", lambda root: "the same")  # a source key that cannot tell
    stale = load(tmp_path, "imagefolder", root)
    rewrite(20)
    assert load(tmp_path, "imagefolder", root).fingerprint == stale.fingerprint  # what --verify-data is for
    with notices.collecting() as said:
        fresh = load(tmp_path, "imagefolder", root, verify_data=True)
    assert fresh.fingerprint != stale.fingerprint
    assert len(said) == 1 and "holds other images than its source now: set aside as" in said[0]
    with notices.collecting() as said:
        assert load(tmp_path, "imagefolder", root, verify_data=True).fingerprint == fresh.fingerprint
    assert len(said) == 1 and "decodes to the images cached in" in said[0]
    vggdata._load_data.cache_clear()
    assert cli.main(["data", "prepare", "imagefolder", "--data-dir", str(root), "--cache-dir", str(tmp_path / "cache"),
                     "--verify-data"]) == 0
    assert "vggbench: --verify-data: image folder" in capsys.readouterr().err


def test_truncated_cache_file_is_set_aside_and_decoded_again(tmp_path):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=2)
    first = load(tmp_path, "imagefolder", root).train_x.clone()
    [entry] = cache_entries(tmp_path)
    x = entry / "train.x.u8"
    full = x.stat().st_size
    with open(x, "r+b") as f:
        f.truncate(full - 100)
    with notices.collecting() as said:
        again = load(tmp_path, "imagefolder", root)
    assert torch.equal(again.train_x, first)
    assert len(said) == 1 and said[0].startswith(f"cache entry {entry} is damaged (train.x.u8 has {full - 100:,} "
                                                 f"bytes, not {full:,}): set aside as")
    assert len(list(entry.parent.glob(f"{entry.name}.*.corrupt"))) == 1


def test_read_only_cache_is_read_without_a_lock(tmp_path, capsys):
    root = image_folder(tmp_path / "flowers", per_class=10, classes=2)
    cache = tmp_path / "cache"
    args = ["data", "prepare", "imagefolder", "--data-dir", str(root), "--cache-dir", str(cache)]
    assert cli.main(args) == 0
    before = files_under(cache)
    for p in [cache, *cache.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        vggdata._load_data.cache_clear()
        assert cli.main(args) == 0  # fully prepared: served as it is
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            cli.main(args + ["--image-size", "64"])  # not prepared at 64px: writing needed
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert f"cache dir {cache} is not writable" in err and "vggbench data prepare imagefolder --cache-dir" in err
        assert files_under(cache) == before
    finally:
        for p in [cache, *cache.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


# ------------------------------------------------------------------------------ the real CIFAR-10 copy

@pytest.mark.data
@pytest.mark.skipif(not CIFAR10.is_dir(), reason=f"no CIFAR-10 copy at {CIFAR10}")
def test_real_cifar10():
    # The user's cache (default): decoded once (~20 s on 2 cores), then mapped in well under a second.
    spec = DataSpec("cifar10", 32, data_dir=str(CIFAR10), cache_dir=os.environ.get("VGGBENCH_CACHE"))
    sources.load(spec)
    t0 = time.perf_counter()
    data = sources.load(spec)
    x = data.train_x.clone()  # read every byte, not only map it
    assert time.perf_counter() - t0 < 1
    assert data.sizes() == {"train": 45000, "val": 5000, "test": 10000}
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and len(data.classes) == 10
    assert torch.bincount(data.val_y).tolist() == [500] * 10
    assert np.allclose(data.mean, (0.4914, 0.4822, 0.4465), atol=0.005)
    assert x.shape == (45000, 3, 32, 32)
