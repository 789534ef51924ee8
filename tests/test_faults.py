"""Faults a user meets, each answered in one line with nothing partial left behind (the pattern of
test_bad_input.py): bad data once before collection, labels outside the class names, a cache
folder that is a file, a full disk at the end of a session; and recovery made visible: a resume,
a lock held by another process, a corrupt record that a reading command skips without renaming.
"""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_data import cifar_pickles, image_folder
from helpers import files_under, usage_error
from vggbench import notices, records, tables
from vggbench.cells import cells_for
from vggbench.checkpoint import Checkpoint
from vggbench.cli import main
from vggbench.data import DataError, DataSpec, load_data
from vggbench.grid import ABLATIONS, check_case_names
from vggbench.options import Options


# Inputs that fail only when the data is read: (id, arguments, message); {tmp} is the test's folder.
DATA_CASES = [
    ("empty folder", ["--dataset", "imagefolder", "--data-dir", "{tmp}/empty"],
     "{tmp}/empty: no class folders: expected root/<class>/<image> or root/train/<class>/<image>"),
    ("labels outside the classes", ["--dataset", "imagefolder", "--data-dir", "{tmp}/pickles"],
     "15 labels of the train split are outside the 3 classes (0..2), first row 3 (label 3): fix the labels"),
    ("another class count than the profile's", ["--profile", "cifar10", "--data-dir", "{tmp}/flowers"],
     "image folder {tmp}/flowers has 3 classes, but cifar10 has 10: give the cifar10 data, or --dataset imagefolder"),
    ("cache dir is a file", ["env:VGGBENCH_CACHE={tmp}/a-file", "--dataset", "imagefolder", "--data-dir",
                             "{tmp}/flowers"],
     "cache dir {tmp}/a-file: {tmp}/a-file is a file, not a folder; point $VGGBENCH_CACHE at a folder"),
]


def bad_data(tmp):
    (tmp / "empty").mkdir()
    root, _ = cifar_pickles(tmp / "pickles", classes=4)
    meta = root / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": ["apple", "grass", "sea"]}))  # label 3 has no name
    image_folder(tmp / "flowers", per_class=10, classes=3)
    (tmp / "a-file").write_text("not a folder\n")


@pytest.mark.parametrize("args,message", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_data_errors_are_one_usage_error_before_collection(args, message, tmp_path, monkeypatch):
    """In-process: the data checks `pytest ablations` runs before collection (vggbench.preflight)."""
    bad_data(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    before = files_under(tmp_path)
    monkeypatch.setenv("VGGBENCH_CACHE", str(cache))
    for name, value in (a[4:].format(tmp=tmp_path).split("=", 1) for a in args if a.startswith("env:")):
        monkeypatch.setenv(name, value)
    args = [a.format(tmp=tmp_path) for a in args if not a.startswith("env:")]
    error = usage_error([*args, "--results-dir", str(tmp_path / "results")])
    assert message.format(tmp=tmp_path) in error and "\n" not in error
    # No results, no temporary folder; in the cache only complete entries (valid data that the profile
    # does not fit) and its .locks/ folder
    entries = {p.parent for p in cache.glob("*/meta.json")}
    assert [p for p in files_under(tmp_path) if ".locks" not in Path(p).parts and not any(
        (tmp_path / p).is_relative_to(e) for e in entries)] == before


def test_data_without_class_names_is_not_a_100_class_cifar10(tmp_path):
    import datasets

    root = tmp_path / "numbers"
    (root / "plain_text").mkdir(parents=True)
    png = image_folder(tmp_path / "png", per_class=2, classes=1) / "apple" / "000.png"
    for split in ("train", "test"):  # a plain integer label column: no ClassLabel names
        ds = datasets.Dataset.from_dict({"img": [{"bytes": png.read_bytes(), "path": None}] * 20,
                                         "label": [i % 3 for i in range(20)]},
                                        features=datasets.Features({"img": datasets.Image(),
                                                                    "label": datasets.Value("int64")}))
        ds.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    with pytest.raises(DataError) as err:
        load_data(DataSpec("cifar10", data_dir=str(root), cache_dir=str(tmp_path / "cache")))
    assert str(err.value) == (f"parquet directory {root} has no class names and its labels make 3 classes, but "
                              "cifar10 has 10: give the cifar10 data, or --dataset imagefolder (classes numbered "
                              "from the labels)")


def test_a_subset_that_does_not_fit_the_data_says_so():
    with pytest.raises(DataError) as err:
        load_data(DataSpec("synthetic", train_subset=5))
    assert str(err.value) == ("--train-subset 5 is smaller than the 10 classes of synthetic: give at least 10 "
                              "(one image per class)")
    with pytest.raises(DataError) as err:
        load_data(DataSpec("synthetic", test_subset=2001))
    assert str(err.value) == ("--test-subset 2001 is larger than the 2000 test images of synthetic: give at most "
                              "2000, or drop --test-subset")


def test_an_unknown_case_says_which_there_are():
    check_case_names(["A", "depth:E", "D-adam"])
    with pytest.raises(ValueError) as err:
        check_case_names(["A", "depth:F"])
    assert str(err.value).startswith("--case depth:F: no such case; cases are depth: A A-LRN B C D E; "
                                     "batchnorm: A-plain")


def test_cache_dir_that_is_a_file_in_the_cli(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    image_folder(tmp_path / "flowers", per_class=4, classes=2)
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "imagefolder", "--data-dir", str(tmp_path / "flowers"),
              "--cache-dir", str(tmp_path / "a-file" / "sub")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"vggbench data: error: cache dir {tmp_path}/a-file/sub: {tmp_path}/a-file is a file, not a "
                   "folder; point --cache-dir at a folder\n")
    assert files_under(tmp_path) == before


def test_full_disk_reports_the_cells_error_and_ends_with_a_summary(tmp_path, ablations):
    results = tmp_path / "results"
    run = ablations("--case", "batchnorm:A-bn", "--epochs", "1", "--train-subset", "100", "--test-subset", "50",
                    results=results, plugins=["enospc_plugin"], timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "INTERNALERROR" not in out and "Traceback" not in run.stderr
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED ablations/test_batchnorm.py")]
    assert len(failed) == 1  # the cell failed with its own error ...
    assert [line for line in run.stdout.splitlines()  # ... whose traceback is the test's report section
            if line.startswith("OSError: [Errno 28] No space left on device: ")]
    assert [line for line in run.stdout.splitlines() if line.startswith(
        "vggbench: tables not written (OSError: [Errno 28] No space left on device")] != []
    others = len(ABLATIONS) - 1  # --case builds only its cells: each other ablation's module has one empty item
    assert run.stdout.rstrip().splitlines()[-1].startswith(f"1 failed, {others} deselected in")
    # nothing partial: no record, table or temporary file (the cell's TensorBoard log of the epochs it ran stays,
    # as a job log would)
    assert [p for p in files_under(results) if not p.startswith((".locks", "tensorboard"))] == ["runs"]


def test_a_resume_says_from_which_epoch_and_counts_attempts(tmp_path):
    first = Checkpoint(tmp_path / "abc.ckpt")
    first.save({"history": [{"epoch": 1}, {"epoch": 2}]})
    again = Checkpoint(tmp_path / "abc.ckpt")
    with notices.collecting() as said:
        assert again.load()["history"] == [{"epoch": 1}, {"epoch": 2}]
    assert said == ["resuming abc from epoch 2 (abc.ckpt, attempt 2)"]
    assert again.earlier["attempts"] == 1 and again.earlier["epoch"] == 2 and again.earlier["wall_s"] > 0
    again.save({"history": []})
    third = Checkpoint(tmp_path / "abc.ckpt")
    with notices.collecting():
        third.load()
    assert third.earlier["attempts"] == 2 and third.earlier["wall_s"] > again.earlier["wall_s"]


def test_waiting_for_a_lock_says_so_once(tmp_path):
    lock = tmp_path / "cell.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"lock = FileLock({str(lock)!r}); lock.acquire(); print('held', flush=True); "
                               "time.sleep(1)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with notices.collecting() as said:
        with notices.locked(lock, "cell depth/A (seed 0)"):
            pass
    assert holder.wait() == 0
    assert said == [f"waiting for cell depth/A (seed 0): another process holds {lock}"]


def test_collect_skips_a_corrupt_record_without_renaming_it(tmp_path, capsys):
    opts = Options(epochs=1, train_subset=100, test_subset=50)
    tables.save_session(tmp_path, opts, ["optimizer"])
    cell = cells_for("optimizer", opts)[0]
    path = records.record_path(tmp_path, cell.id)
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "o')
    assert main(["collect", "--results-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [f"vggbench: {path} is corrupt (checksum fails): skipped; running its cell again "
                                "sets it aside"]
    assert path.read_text() == '{"status": "o'  # a reading command renames nothing
    assert json.loads((tmp_path / "session.json").read_text())["ablations"] == ["optimizer"]
