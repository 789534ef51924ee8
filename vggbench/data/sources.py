"""Real datasets: CIFAR-10/100, Tiny ImageNet, ImageNet and any image folder, decoded once into an
on-disk cache of uint8 tensors that a later run maps in well under a second.

Long because every layout below ends in the same Listing and the same cache entry: each reader is a
short function, and reading one layout means reading the decoding and the cache beside it.

Where the images come from (`--data-dir`, else the dataset's hub id in KNOWN):
  hub id            owner/name[@revision], read with datasets.load_dataset (the Hugging Face cache)
  parquet directory the hub's layout on disk (e.g. plain_text/train-00000-of-00001.parquet), read
                    with datasets.load_dataset(path): the same code as a hub id
  CIFAR pickles     cifar-10-batches-py/ or cifar-100-python/, read here (torchvision's reader
                    insists on the original MD5s)
  tiny-imagenet-200 train/<wnid>/images/*.JPEG, val/images + val/val_annotations.txt, wnids.txt
                    (class order), words.txt (class names)
  image folder      root/<class>/<image>, or root/{train,val,test}/<class>/<image>
A hub id that is not in the Hugging Face cache fails at once when HF_HUB_OFFLINE is set or the hub
cannot be reached, with a message that says to pass --data-dir (no retries, no time-outs).

Decoding (PIL): every image becomes RGB (grayscale, RGBA, CMYK and palette images are converted)
and is fitted to the spec's size (centre crop to the target's aspect, bicubic resize). An image
that cannot be decoded is an error that names it and counts the bad ones; with skip_bad they are
skipped and counted (meta.json, ImageData.source). Decoding runs in one process: ImageNet takes
hours, once (`vggbench data prepare imagenet --data-dir ...`).

Splits, fixed seeds (model selection uses val only; test is reported, never tuned on):
  train + val + test    used as given
  train + test (CIFAR)  val = a stratified min(5000, 1/10) of train, taken out of train: 45000/5000
  train + val           (Tiny ImageNet, ImageNet: test labels are not public) val is divided
                        stratified 8:2 into val and test
  train only            test = a stratified 1/10 of train, then val as for train + test
A carved split has at least one image per class where the source has enough; a split with fewer
images than classes is an error (a top-1 over it measures nothing).

Cache: <cache_dir>/<dataset>-<size>px-<key>/ holds meta.json (classes, split sizes, the content fingerprint
that cell ids hash (computed once, when the entry is built), mean/std of the
train split, provenance) and per split <split>.x.u8 (raw N x 3 x H x W uint8) and <split>.y.i64.
The key hashes the source's identity: a local directory's path and every file's size, mtime, inode
and ctime, or a hub id@revision ("main" is decoded once and reused until the entry is deleted). Images are
memory-mapped (torch.from_file), so a cache need not fit in RAM (ImageNet at 224 is ~190 GB).
An entry is built in a temporary directory and renamed into place (os.replace) under a file lock:
never half-written, decoded once by concurrent workers (the locks live in <cache_dir>/.locks/).
A complete entry is read without a lock, so a cache shared read-only serves; a damaged one (a split
file of another size than meta.json says) is set aside and decoded again; `--verify-data` decodes
the source again and compares. cache_dir defaults to $VGGBENCH_CACHE, else ~/.cache/vggbench.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import secrets
import socket
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from ..notices import locked, notice
from .spec import DataError, DataSpec, ImageData, channel_stats, content_digest, split_off

FORMAT = 1  # bump when the cache layout or the decoding changes: old entries are then ignored


@dataclass(frozen=True)
class Known:
    hub_id: str | None        # used when no --data-dir is given
    image_size: int           # the dataset's own size (`vggbench data prepare` default)
    num_classes: int | None   # a copy with another count is another dataset (None: any)
    originals: int | None = None  # every original image has this size (None: they vary, usually larger)
    names: tuple[str, ...] | None = None  # its class names, in order, where its sources all agree on them


CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
KNOWN = {
    "cifar10": Known("uoft-cs/cifar10", 32, 10, 32, CIFAR10_NAMES),
    "cifar100": Known("uoft-cs/cifar100", 32, 100, 32),
    "tiny-imagenet": Known("zh-plus/tiny-imagenet", 64, 200, 64),
    "imagenet": Known("ILSVRC/imagenet-1k", 224, 1000),  # gated on the hub: accept its terms, log in
    "imagefolder": Known(None, 32, None),
}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
VAL_FROM_TRAIN = 5000   # at most this many train images become val (CIFAR's customary 45000 / 5000)
TEST_SHARE_OF_VAL = 0.2  # val divided 8:2 into val / test where test labels are not public
SPLIT_SEED = 0
HUB_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*(@[\w./-]+)?")  # not ./x or ../x: those are paths

Payload = Union[bytes, str, np.ndarray]  # encoded image bytes, a file path, or an H x W x 3 array


def default_cache_dir() -> Path:
    return Path(os.environ.get("VGGBENCH_CACHE") or Path.home() / ".cache" / "vggbench")


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder (--cache-dir, else $VGGBENCH_CACHE, else ~/.cache/vggbench); DataError if it
    or a folder above it is a file. Creates nothing."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    if not existing.is_dir():
        given = "--cache-dir" if cache_dir else ("$VGGBENCH_CACHE" if os.environ.get("VGGBENCH_CACHE") else "the cache")
        raise DataError(f"cache dir {root}: {existing} is a file, not a folder; point {given} at a folder")
    return root


def cache_size(dataset: str, largest: int) -> int:
    """The size to cache a dataset at for crops up to a rescaled side of `largest` pixels: that side,
    from pixels that exist (never an upsampling of a smaller cached copy), but no larger than the
    originals where they all have one size (CIFAR's 32: the loader's resampling upsamples them)."""
    originals = KNOWN[dataset].originals if dataset in KNOWN else None
    return largest if originals is None else min(largest, originals)


def native_size(dataset: str) -> int:
    return KNOWN[dataset].image_size if dataset in KNOWN else DataSpec.image_size


# ------------------------------------------------------------------------------ listings

@dataclass
class Split:
    """One labelled split of a source: labels up front, image payloads streamed on demand."""
    labels: torch.Tensor  # int64
    rows: Callable[[list[int]], Iterator[tuple[str, Payload]]]  # (name for errors, payload), in order


@dataclass
class Listing:
    classes: list[str]
    splits: dict[str, Split]  # "train", and "val" and/or "test" where the source has them
    named: bool = True        # False: the source has no class names; classes are numbered from the labels


@dataclass(frozen=True)
class Source:
    origin: str    # what a person reads: "parquet directory /data/cifar10"
    identity: str  # what the cache key hashes: changes when the data does
    list: Callable[[Path], Listing]  # given a scratch directory, deleted after decoding


def _indexed_rows(names: list[str], payloads, indices: list[int]):
    return ((names[i], payloads[i]) for i in indices)


def _file_split(pairs: list[tuple[Path, int]]) -> Split:
    paths = [str(p) for p, _ in pairs]
    return Split(torch.tensor([y for _, y in pairs], dtype=torch.int64), functools.partial(_indexed_rows, paths, paths))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not _hidden(p.relative_to(folder)))


def _hidden(path: Path) -> bool:
    """.git/, .ipynb_checkpoints/, ._photo.jpg (macOS): never a class, never an image."""
    return any(part.startswith(".") for part in path.parts)


def _folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(Path(p.name)))


# ------------------------------------------------------------------------------ Hugging Face: hub ids, parquet dirs

def _list_hf(dsd) -> Listing:
    """A DatasetDict as a listing: the Image column streamed undecoded (PIL decodes it here, once)."""
    import datasets

    features = next(iter(dsd.values())).features
    image_col = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None) or \
        next((k for k in ("image", "img") if k in features), None)
    label_col = next((k for k in ("label", "fine_label", "labels") if k in features), None) or \
        next((k for k, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    if image_col is None or label_col is None:
        raise DataError(f"no image and label columns among {', '.join(features)}: expected e.g. image/img and label")
    splits = {}
    for hf_name, ds in dsd.items():
        labels = torch.from_numpy(ds.data.column(label_col).to_numpy().astype(np.int64))
        if hf_name not in SPLIT_NAMES or (labels < 0).all():
            continue  # an unknown or unlabelled split (ImageNet's test has label -1): nothing to score on
        ds = ds.select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False))
        splits[SPLIT_NAMES[hf_name]] = Split(labels, functools.partial(_hf_rows, ds, image_col, hf_name))
    label = features[label_col]
    n = int(max(int(s.labels.max()) for s in splits.values())) + 1 if splits else 0
    named = isinstance(label, datasets.ClassLabel)
    return Listing(list(label.names) if named else [str(i) for i in range(n)], splits, named)


def _hf_rows(ds, col: str, split: str, indices: list[int], batch: int = 256):
    for start, rows in zip(range(0, len(indices), batch), ds.select(indices).iter(batch_size=batch)):
        for i, img in zip(indices[start:start + batch], rows[col]):
            yield f"{split} row {i}", img["bytes"] if img["bytes"] is not None else img["path"]


def _list_parquet_dir(root: Path, scratch: Path) -> Listing:
    import datasets

    # load_dataset converts to Arrow first: keep that copy in scratch (deleted after decoding), not in ~/.cache.
    return _list_hf(datasets.load_dataset(str(root), cache_dir=str(scratch)))


def _hub_offline() -> bool:
    import datasets

    # Both libraries read HF_HUB_OFFLINE once, at import: read it again so a later setting counts too.
    return datasets.config.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint (seconds at most): without network the hub client retries for ~25 s."""
    from huggingface_hub import constants

    if urllib.request.getproxies().get("https"):
        return True  # behind a proxy a direct connect proves nothing: let the client try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_hub():
    """Offline mode for this call only: the libraries then answer from their cache or fail at once."""
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _list_hub(repo: str, revision: str, scratch: Path) -> Listing:
    import datasets

    if not _hub_offline() and _hub_reachable():
        return _list_hf(datasets.load_dataset(repo, revision=revision))
    why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub cannot be reached"
    with _offline_hub():
        try:
            return _list_hf(datasets.load_dataset(repo, revision=revision))
        except OSError:  # ConnectionError, FileNotFoundError: not in the Hugging Face cache
            raise DataError(f"hub dataset {repo} is not in the Hugging Face cache and {why}: give a local copy with "
                            f"--data-dir PATH (hub parquet layout, CIFAR pickles, tiny-imagenet-200/ or "
                            f"<class>/<image> folders), or download it once where the hub is reachable") from None


# ------------------------------------------------------------------------------ CIFAR pickles

CIFAR_PICKLES = {  # directory: (train files, test files, label key, meta file, class-names key)
    "cifar-10-batches-py": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels",
                            "batches.meta", "label_names"),
    "cifar-100-python": (["train"], ["test"], "fine_labels", "meta", "fine_label_names"),
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")  # the originals are Python 2 pickles
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a readable CIFAR pickle ({err}): extract the archive again") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _pickled(root: Path, file: str, key: str):
    """One key of a CIFAR pickle, or a DataError naming the file and the keys it has."""
    obj = _unpickle(root / file)
    if key not in obj:
        raise DataError(f"{root / file}: no {key!r} key (it has {', '.join(map(str, obj)) or 'none'}): not a "
                        "CIFAR pickle of this layout; extract the archive again")
    return obj[key]


def _list_cifar_pickles(layout: str, root: Path, scratch: Path) -> Listing:
    train_files, test_files, label_key, meta_file, names_key = CIFAR_PICKLES[layout]
    splits = {}
    for split, files in (("train", train_files), ("test", test_files)):
        parts = [(f, _pickled(root, f, "data"), _pickled(root, f, label_key)) for f in files]
        # Rows are 3072 bytes: the R, G and B planes of a 32 x 32 image.
        x = np.concatenate([np.asarray(d, dtype=np.uint8) for _, d, _ in parts]).reshape(-1, 3, 32, 32)
        names = [f"{f} row {i}" for f, _, y in parts for i in range(len(y))]
        labels = torch.tensor([v for _, _, y in parts for v in y], dtype=torch.int64)
        splits[split] = Split(labels, functools.partial(_indexed_rows, names, x.transpose(0, 2, 3, 1)))
    # A Python 3 re-pickle keeps the names as bytes (the originals, Python 2 str, load as str).
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _pickled(root, meta_file, names_key)]
    return Listing(names, splits)


# ------------------------------------------------------------------------------ tiny-imagenet-200, image folders

def _list_tiny_imagenet(root: Path, scratch: Path) -> Listing:
    wnids = (root / "wnids.txt").read_text().split()
    words = root / "words.txt"
    names = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line) if words.exists() else {}
    index = {w: i for i, w in enumerate(wnids)}
    train = [(p, index[w]) for w in wnids for p in _images_in(root / "train" / w / "images")]
    val = []
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        file, wnid = line.split("\t")[:2]
        if wnid not in index:
            raise DataError(f"{root}/val/val_annotations.txt names {wnid}, which is not in wnids.txt")
        val.append((root / "val" / "images" / file, index[wnid]))
    classes = [names.get(w, w).split(",")[0].strip() for w in wnids]  # "goldfish, Carassius auratus" -> "goldfish"
    return Listing(classes, {"train": _file_split(train), "val": _file_split(val)})


def _list_image_folder(root: Path, scratch: Path) -> Listing:
    tops = _folders(root)
    split_dirs = ({SPLIT_NAMES[p.name]: p for p in tops}
                  if (root / "train").is_dir() and all(p.name in SPLIT_NAMES for p in tops) else {"train": root})
    classes = [p.name for p in _folders(split_dirs["train"])]
    if not classes:
        raise DataError(f"{root}: no class folders: expected root/<class>/<image> or root/train/<class>/<image>")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, folder in split_dirs.items():
        pairs = []
        for class_dir in _folders(folder):
            if class_dir.name not in index:
                raise DataError(f"{class_dir}: class {class_dir.name!r} has no train folder: add it or remove it")
            images = _images_in(class_dir)
            if not images:
                raise DataError(f"{class_dir}: a class folder without images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                                "add its images or remove it")
            pairs += [(p, index[class_dir.name]) for p in images]
        if not pairs:
            raise DataError(f"{folder}: no images in <class>/ folders ({', '.join(sorted(IMAGE_SUFFIXES))})")
        splits[split] = _file_split(pairs)
    return Listing(classes, splits)


# ------------------------------------------------------------------------------ choosing the source

def _tree_identity(root: Path) -> str:
    """The path, every folder's relative path and every file's relative path, size, mtime, inode and
    ctime: changes when the data does. Size and mtime alone miss a file rewritten in place with
    other bytes of the same size and its mtime restored (cp -p, rsync -a, tar x, os.utime restore
    it); a write gives a file a new ctime that no tool sets back, a copy a new inode.
    (`--verify-data` decodes it all again.)"""
    h = hashlib.sha256(str(root.resolve()).encode())
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        h.update("".join(f"{os.path.relpath(os.path.join(folder, d), root)}/\n" for d in dirs).encode())  # an empty class
        for name in sorted(files):
            path = os.path.join(folder, name)
            st = os.stat(path)
            h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0"
                     f"{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def _local(kind: str, root: Path, lister) -> Source:
    return Source(f"{kind} {root.resolve()}", "local:" + _tree_identity(root), functools.partial(lister, root))


def _find(root: Path, subdir: str, markers: tuple[str, ...]) -> Path | None:
    """root itself or root/subdir, whichever holds all the marker files."""
    return next((d for d in (root, root / subdir) if all((d / m).is_file() for m in markers)), None)


def local_source(root: Path) -> Source:
    """The layout of a local directory, recognised by its marker files, else an image folder."""
    for layout, (train_files, test_files, _, meta_file, _) in CIFAR_PICKLES.items():
        found = _find(root, layout, (meta_file, train_files[0], test_files[0]))
        if found:
            return _local("CIFAR pickles", found, functools.partial(_list_cifar_pickles, layout))
    found = _find(root, "tiny-imagenet-200", ("wnids.txt",))
    if found:
        return _local("tiny-imagenet-200 tree", found, _list_tiny_imagenet)
    if any(next(root.glob(pattern), None) for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet")):
        return _local("parquet directory", root, _list_parquet_dir)
    return _local("image folder", root, _list_image_folder)


def resolve(spec: DataSpec) -> Source:
    """Where the spec's images come from: --data-dir (a directory or a hub id), else the default hub id."""
    where = spec.data_dir or KNOWN[spec.dataset].hub_id
    if where is None:
        raise DataError(f"{spec.dataset} needs --data-dir PATH: a root/<class>/<image> folder tree")
    path = Path(where).expanduser()
    if path.is_dir():
        return local_source(path)
    if path.exists() or not HUB_ID.fullmatch(where):
        raise DataError(f"--data-dir {where}: no such directory (nor a hub id owner/name[@revision])")
    repo, _, revision = where.partition("@")
    revision = revision or "main"
    return Source(f"hub {repo}@{revision}", f"hub:{repo}@{revision}", functools.partial(_list_hub, repo, revision))


# ------------------------------------------------------------------------------ splits

def plan_splits(listing: Listing) -> tuple[dict[str, tuple[Split, torch.Tensor]], list[str]]:
    """Final train / val / test as (source split, row indices), and notes on what was carved where."""
    rows = {k: (s, torch.arange(len(s.labels))) for k, s in listing.splits.items()}
    if "train" not in rows:
        raise DataError(f"no train split among {', '.join(listing.splits) or 'none'}")
    notes = []

    def carve(frm: str, to: str, n: int, seed: int):
        split, idx = rows[frm]
        kept, taken = split_off(split.labels[idx], n, seed)
        rows[frm], rows[to] = (split, idx[kept]), (split, idx[taken])
        notes.append(f"{to}: {len(taken)} of the {len(idx)} {frm} images (stratified, seed {seed})")

    n = len(listing.classes)  # a carved split gets at least one image per class where there are enough
    if "val" not in rows and "test" not in rows:
        carve("train", "test", max(n, len(rows["train"][1]) // 10), SPLIT_SEED + 1)
    if "test" not in rows:  # the labelled val is all there is to test on: divide it 8:2
        carve("val", "test", max(n, round(TEST_SHARE_OF_VAL * len(rows["val"][1]))), SPLIT_SEED + 2)
    if "val" not in rows:
        carve("train", "val", max(n, min(VAL_FROM_TRAIN, len(rows["train"][1]) // 10)), SPLIT_SEED + 3)
    empty = [k for k, (_, idx) in rows.items() if len(idx) == 0]
    if empty:
        raise DataError(f"too few images: the {' and '.join(empty)} split would be empty")
    few = [f"{k} {len(idx)}" for k, (_, idx) in rows.items() if len(idx) < n]
    if few:  # a top-1 over fewer images than classes measures nothing (and an empty class is never tested)
        raise DataError(f"too few images for {n} classes: {', '.join(few)} (at least one per class in each split); "
                        "add images, or check that the folder holds the dataset")
    return {k: rows[k] for k in ("train", "val", "test")}, notes


# ------------------------------------------------------------------------------ decoding

def _open(payload: Payload) -> Image.Image:
    if isinstance(payload, np.ndarray):
        return Image.fromarray(payload)
    return Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload)


def decode(payload: Payload, size: int) -> np.ndarray:
    """One image as a 3 x size x size uint8 RGB array."""
    with _open(payload) as img:
        rgb = img.convert("RGB")  # L, LA, RGBA, CMYK, P ... -> RGB (alpha dropped)
    if rgb.size != (size, size):
        rgb = ImageOps.fit(rgb, (size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb).transpose(2, 0, 1)


def _write_split(folder: Path, name: str, split: Split, idx: torch.Tensor, size: int, label: str):
    """Decode the rows into <name>.x.u8 / <name>.y.i64, streaming (no N x 3 x H x W in RAM).
    Returns (images written, [(row name, error)] of the undecodable ones)."""
    kept, bad = [], []
    rows = split.rows(idx.tolist())
    with open(folder / f"{name}.x.u8", "wb") as f:
        for (ref, payload), y in tqdm(zip(rows, split.labels[idx].tolist()), total=len(idx), unit="img",
                                      desc=f"decoding {label} {name}", mininterval=1):
            try:
                f.write(decode(payload, size).tobytes())
                kept.append(y)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                bad.append((ref, f"{type(err).__name__}: {err}"))
    np.asarray(kept, dtype=np.int64).tofile(folder / f"{name}.y.i64")
    return len(kept), bad


def _check_bad(bad: list[tuple[str, str]], total: int, spec: DataSpec, origin: str) -> None:
    if not bad:
        return
    ref, err = bad[0]
    what = f"{len(bad)} of {total} images in {origin} cannot be decoded, first {ref} ({err})"
    if not spec.skip_bad:
        raise DataError(f"{what}: fix or remove them, or pass --skip-bad to skip them (counted)")
    warnings.warn(f"{what}: skipped (--skip-bad)", stacklevel=2)


def check_named(dataset: str, classes: list[str], origin: str, image_size: int | None = None,
                named: bool = True) -> None:
    """A named dataset's data looks like it: its class count, its class names where known, and the
    size of its originals where they all have one (image_size: an original's, where known). A
    CIFAR-10 copy is not "cifar100", and a folder of anything is not "cifar10"."""
    known = KNOWN.get(dataset)
    if known is None or known.num_classes is None:
        return
    fix = f"give the {dataset} data, or --dataset imagefolder (any labelled images)"
    if not named and len(classes) != known.num_classes:  # 100 numbered classes are not "cifar10"
        raise DataError(f"{origin} has no class names and its labels make {len(classes)} classes, but {dataset} "
                        f"has {known.num_classes}: give the {dataset} data, or --dataset imagefolder (classes "
                        "numbered from the labels)")
    if len(classes) != known.num_classes:
        raise DataError(f"{origin} has {len(classes)} classes, but {dataset} has {known.num_classes}: {fix}")
    if named and known.names is not None and [c.lower() for c in classes] != list(known.names):
        raise DataError(f"{origin}'s classes ({', '.join(classes[:4])}, ...) are not {dataset}'s "
                        f"({', '.join(known.names[:4])}, ...): {fix}")
    if image_size is not None and known.originals is not None and image_size != known.originals:
        raise DataError(f"{origin} has {image_size}px images, but {dataset}'s are {known.originals}px: {fix}")


def _original_size(split: Split) -> int | None:
    """The longer side of a split's first image (None if it cannot be read: decoding says why)."""
    try:
        with _open(next(split.rows([0]))[1]) as img:
            return max(img.size)
    except (OSError, ValueError, SyntaxError, StopIteration):
        return None


def check_labels(listing: Listing, spec: DataSpec, origin: str) -> None:
    """Labels inside the class names; a named dataset's classes and image size its own (check_named)."""
    n = len(listing.classes)
    train = listing.splits.get("train")
    check_named(spec.dataset, listing.classes, origin, _original_size(train) if train is not None and len(train.labels)
                else None, listing.named)
    for name, split in listing.splits.items():
        bad = torch.nonzero((split.labels < 0) | (split.labels >= n)).flatten()
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{origin}: {len(bad)} labels of the {name} split are outside the {n} classes (0..{n - 1}),"
                            f" first row {i} (label {int(split.labels[i])}): fix the labels or the class names")


def _check_room(folder: Path, images: int, size: int, origin: str) -> None:
    """DataError before decoding when the cache's disk cannot hold the entry (images x 3 x size^2 bytes)."""
    need, free = images * 3 * size * size, shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"{origin} at {size}px needs {need / 1e9:,.1f} GB in the cache ({images} images) but "
                        f"{folder.parent} has {free / 1e9:,.1f} GB free: use a smaller --image-size or another "
                        "--cache-dir")


def _build(spec: DataSpec, source: Source, entry: Path) -> None:
    """Decode the source into a temporary directory, then rename it to `entry`: all or nothing."""
    for stale in entry.parent.glob(f"{entry.name}.tmp-*"):  # a killed build's: we hold the entry's lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    (tmp / "scratch").mkdir(parents=True)
    try:
        listing = source.list(tmp / "scratch")
        if len(listing.classes) < 2:
            raise DataError(f"{source.origin}: {len(listing.classes)} class(es): a classifier needs at least 2")
        check_labels(listing, spec, source.origin)
        rows, notes = plan_splits(listing)
        _check_room(tmp, sum(len(i) for _, i in rows.values()), spec.image_size, source.origin)
        sizes, bad = {}, {}
        for name, (split, idx) in rows.items():
            sizes[name], bad[name] = _write_split(tmp, name, split, idx, spec.image_size, spec.dataset)
        _check_bad([b for v in bad.values() for b in v], sum(len(i) for _, i in rows.values()), spec, source.origin)
        if not all(sizes.values()):
            raise DataError(f"{source.origin}: no decodable images left in a split ({sizes})")
        mean, std = channel_stats(_tensors(tmp, "train", sizes["train"], spec.image_size)[0],
                                  chunk=max(1, (1 << 22) // (3 * spec.image_size ** 2)))
        meta = {"format": FORMAT, "dataset": spec.dataset, "origin": source.origin, "image_size": spec.image_size,
                "classes": listing.classes, "sizes": sizes, "fingerprint": _fingerprint(tmp, listing.classes, sizes,
                                                                                        spec.image_size),
                "source_sizes": {k: len(s.labels) for k, s in listing.splits.items()}, "splits": notes,
                "mean": mean, "std": std, "skipped": {k: [r for r, _ in v] for k, v in bad.items() if v}}
        shutil.rmtree(tmp / "scratch")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # last: its presence marks a complete entry
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ the cache

def _tensors(entry: Path, split: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory-mapped (copy-on-write) views of a split: nothing is read until it is used."""
    x = torch.from_file(str(entry / f"{split}.x.u8"), shared=False, size=n * 3 * size * size, dtype=torch.uint8)
    y = torch.from_file(str(entry / f"{split}.y.i64"), shared=False, size=n, dtype=torch.int64)
    return x.view(n, 3, size, size), y


def writable(folder: Path) -> bool:
    """Whether one can write in an existing folder (a read-only mount, chmod a-w: not)."""
    if not os.access(folder, os.W_OK | os.X_OK) or os.statvfs(folder).f_flag & os.ST_RDONLY:
        return False
    # root may write anywhere; a folder someone made read-only (chmod a-w) is still left alone
    return os.geteuid() != 0 or bool(folder.stat().st_mode & 0o222)


def cache_entry(spec: DataSpec, source: Source) -> Path:
    key = json.dumps({"format": FORMAT, "dataset": spec.dataset, "image_size": spec.image_size,
                      "skip_bad": spec.skip_bad, "source": source.identity}, sort_keys=True)
    return cache_root(spec.cache_dir) / f"{spec.dataset}-{spec.image_size}px-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _fingerprint(entry: Path, classes: list[str], sizes: dict[str, int], size: int) -> str:
    """The content digest of an entry's decoded images and labels (ImageData.fingerprint)."""
    return content_digest(classes, {k: _tensors(entry, k, n, size) for k, n in sizes.items()})


def _add_fingerprint(entry: Path) -> None:
    """An entry decoded before fingerprints existed: hash it once and store it in its meta.json."""
    meta = json.loads((entry / "meta.json").read_text())
    if "fingerprint" in meta:
        return
    meta["fingerprint"] = _fingerprint(entry, meta["classes"], meta["sizes"], meta["image_size"])
    tmp = entry / f".meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, entry / "meta.json")


def damage(entry: Path) -> str | None:
    """What is wrong with a cache entry in place, in words; None if it is complete: its meta.json
    readable and every split file of the size meta.json says (not truncated by a copy or a full
    disk). The content itself is checked by --verify-data (it decodes the source again)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        side = meta["image_size"]
        for split, n in meta["sizes"].items():
            for file, expected in ((f"{split}.x.u8", n * 3 * side * side), (f"{split}.y.i64", n * 8)):
                size = (entry / file).stat().st_size
                if size != expected:
                    return f"{file} has {size:,} bytes, not {expected:,}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"meta.json or a split unreadable: {type(err).__name__}: {err}"
    return None


def _set_aside(entry: Path, why: str, then: str) -> None:
    aside = entry.with_name(f"{entry.name}.{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}.corrupt")
    os.replace(entry, aside)
    notice(f"cache entry {entry} {why}: set aside as {aside.name} (delete it when done); {then}")


def _verify(spec: DataSpec, source: Source, entry: Path) -> None:
    """--verify-data: decode the source again and compare the content fingerprint with the entry's;
    a changed one replaces the entry (the old one set aside), one line either way."""
    fresh = entry.with_name(f"{entry.name}.verify-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    _build(spec, source, fresh)
    old, new = (json.loads((e / "meta.json").read_text()).get("fingerprint") for e in (entry, fresh))
    if old == new:
        shutil.rmtree(fresh)
        notice(f"--verify-data: {source.origin} decodes to the images cached in {entry}")
        return
    _set_aside(entry, "holds other images than its source now", "the source decoded again is cached in its place")
    os.replace(fresh, entry)


def read_entry(entry: Path, name: str) -> ImageData:
    meta = json.loads((entry / "meta.json").read_text())
    splits = {k: _tensors(entry, k, n, meta["image_size"]) for k, n in meta["sizes"].items()}
    skipped = sum(len(v) for v in meta["skipped"].values())
    given = ", ".join(f"{k} {n}" for k, n in meta["source_sizes"].items())
    source = (f"{meta['origin']} ({'; '.join([given, *meta['splits']])}), cached in {entry}"
              + (f", {skipped} undecodable images skipped" if skipped else ""))
    check_named(name, meta["classes"], meta["origin"])  # an entry cached before names were checked
    return ImageData(name, meta["classes"], *splits["train"], *splits["val"], *splits["test"],
                     mean=tuple(meta["mean"]), std=tuple(meta["std"]), source=source, origin=meta["origin"],
                     fingerprint=meta["fingerprint"])


def _fingerprinted(entry: Path) -> bool:
    try:
        return "fingerprint" in json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return False


def load(spec: DataSpec) -> ImageData:
    """The spec's dataset from its cache entry, decoding it first if there is none (once: file lock).

    A complete entry is read without a lock (nothing is written: a cache shared read-only serves);
    a damaged one (`damage`) is set aside and decoded again. Locks live in <cache>/.locks/."""
    source = resolve(spec)
    entry = cache_entry(spec, source)
    if not spec.verify_data and entry.is_dir() and damage(entry) is None and _fingerprinted(entry):
        return read_entry(entry, spec.dataset)
    lock = entry.parent / ".locks" / f"{entry.name}.lock"
    need = ("is to be checked (--verify-data)" if spec.verify_data and entry.is_dir()
            else "has no complete entry for it" if not entry.is_dir() or damage(entry) else "needs its entry updated")
    try:
        if not writable(next(p for p in (entry.parent, *entry.parent.absolute().parents) if p.exists())):
            raise PermissionError(errno.EACCES, "read-only")
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as err:
        raise DataError(f"cache dir {entry.parent} is not writable ({err.strerror or err}) and {source.origin} "
                        f"{need}: prepare it where the cache is writable (vggbench data prepare {spec.dataset} "
                        "--cache-dir ...), or give a writable --cache-dir") from None
    with locked(lock, f"the decoding of {source.origin}"):
        if entry.is_dir() and (why := damage(entry)) is not None:
            _set_aside(entry, f"is damaged ({why})", "decoding it again")
        if not entry.is_dir():
            _build(spec, source, entry)
        elif spec.verify_data:
            _verify(spec, source, entry)
        _add_fingerprint(entry)
    return read_entry(entry, spec.dataset)
