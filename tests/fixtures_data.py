"""Small on-disk fixtures of every source layout vggbench.sources reads (a few dozen tiny images).

Every image of class c is filled with COLORS[c], so a test can check after decoding, splitting and
caching that each image still carries its own label.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 20)]
CLASSES = ["apple", "grass", "sea", "sun"]


def write_image(path: Path, color, size=(32, 32), mode: str = "RGB", fmt: str | None = None) -> Path:
    """A solid image of `color` in `mode` (L stores the colour's luma: what RGB conversion gives back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, tuple(color))
    if mode == "P":
        img = img.quantize(colors=4)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return path


def image_folder(root: Path, per_class: int = 10, classes: int = 3) -> Path:
    """root/<class>/<image>: PNGs of several sizes, and one grayscale, RGBA, palette and CMYK image."""
    odd = {1: ("L", ".png"), 2: ("RGBA", ".png"), 3: ("P", ".png"), 4: ("CMYK", ".jpg")}
    for c in range(classes):
        for i in range(per_class):
            mode, suffix = odd.get(i, ("RGB", ".png"))
            size = (48, 24) if i == 5 else (32, 32)  # another size and aspect: fitted to 32 x 32
            write_image(root / CLASSES[c] / f"{i:03d}{suffix}", COLORS[c], size, mode)
    return root


def tiny_imagenet(root: Path, train_per_class: int = 6, val: int = 10) -> Path:
    """The original tiny-imagenet-200/ layout at 64 x 64, JPEGs, one of them grayscale."""
    d = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    d.mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("n00001740\tentity\n" + "".join(
        f"{w}\t{CLASSES[c]}, a longer name\n" for c, w in enumerate(wnids)))
    for c, w in enumerate(wnids):
        for i in range(train_per_class):
            mode = "L" if (c, i) == (0, 0) else "RGB"
            write_image(d / "train" / w / "images" / f"{w}_{i}.JPEG", COLORS[c], (64, 64), mode, "JPEG")
        (d / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for i in range(val):
        c = i % len(wnids)
        write_image(d / "val" / "images" / f"val_{i}.JPEG", COLORS[c], (64, 64), fmt="JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    write_image(d / "test" / "images" / "test_0.JPEG", COLORS[0], (64, 64), fmt="JPEG")  # unlabelled: unused
    return root


def hub_parquet(root: Path, image_col: str, label_col: str = "label",
                splits: dict[str, int] | None = None, classes: int = 3) -> Path:
    """The hub's layout: <config>/<split>-00000-of-00001.parquet with an Image and a ClassLabel column."""
    import datasets

    features = datasets.Features({image_col: datasets.Image(), label_col: datasets.ClassLabel(names=CLASSES[:classes])})
    for split, n in (splits or {"train": 30, "test": 9}).items():
        images, labels = [], []
        for i in range(n):
            c = i % classes
            path = write_image(root / "_png" / f"{split}{i}.png", COLORS[c], mode="L" if i == 1 else "RGB")
            images.append({"bytes": path.read_bytes(), "path": None})
            labels.append(c)
        ds = datasets.Dataset.from_dict({image_col: images, label_col: labels}, features=features)
        (root / "plain_text").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    for p in (root / "_png").iterdir():
        p.unlink()
    (root / "_png").rmdir()
    return root


def cifar_pickles(root: Path, layout: str = "cifar-10-batches-py", per_batch: int = 12,
                  classes: int = 4, names: list | None = None) -> tuple[Path, dict[bytes, int]]:
    """torchvision's CIFAR pickle layout with random images; returns it and {image bytes: label}.
    names: the class names stored (default CLASSES[:classes]; bytes as a Python 3 re-pickle has them)."""
    rng = np.random.default_rng(0)
    d = root / layout
    d.mkdir(parents=True)
    names = CLASSES[:classes] if names is None else names
    if layout == "cifar-10-batches-py":
        train_files, test_files, label_key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
        meta = ("batches.meta", {"label_names": names})
    else:
        train_files, test_files, label_key = ["train"], ["test"], "fine_labels"
        meta = ("meta", {"fine_label_names": names, "coarse_label_names": ["all"]})
    truth = {}
    for name in train_files + test_files:
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = [i % classes for i in range(per_batch)]
        truth.update({img.tobytes(): label for img, label in zip(x, y)})
        with open(d / name, "wb") as f:
            pickle.dump({"data": x.reshape(per_batch, 3072), label_key: y, "batch_label": name}, f)
    with open(d / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return root, truth


def synthetic_splits(train: int, val: int, test: int, size: int = 32, seed: int = 5):
    """An in-memory ImageData of vggbench's synthetic glyphs: train / val / test of the given sizes."""
    from vggbench.data import ImageData, channel_stats, synthetic

    x, y = synthetic.generate(train + val + test, size, seed=seed)
    mean, std = channel_stats(x)
    a, b = train, train + val
    return ImageData("tiny", list(synthetic.CLASSES), x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], mean=mean, std=std)
