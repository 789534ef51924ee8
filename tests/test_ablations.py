"""The pytest plugin end to end, in subprocesses: selection with -k, records and tables,
divergence as a result, skipping finished cells, pytest-xdist (bad options: test_bad_input.py)."""
import pandas as pd
import pytest

from helpers import FAST, collected
from vggbench import records
from vggbench.grid import ABLATIONS


def test_k_selects_cases(ablations):
    assert collected(ablations, "-k", "kernel and D") == ["test_kernel[D-3x3-s0]", "test_kernel[D-large-s0]"]
    assert collected(ablations, "-k", "adam") == ["test_optimizer[D-adam-s0]"]
    assert len(collected(ablations, "-k", "depth", "--seeds", "2")) == 12
    assert len(collected(ablations)) == sum(len(a.cases) for a in ABLATIONS.values())   # one test per case and seed


def test_case_selects_exact_cases(ablations):
    # -k "depth and A" would select all six depth cells ("a" is in "ablations"); --case is exact
    assert collected(ablations, "--case", "A", "--case", "kernel:D-large") == ["test_depth[A-s0]",
                                                                                "test_kernel[D-large-s0]"]


@pytest.mark.slow
def test_divergent_cell_is_a_result_and_finished_cells_are_skipped(tmp_path, ablations):
    run = ablations("-k", "optimizer and sgd", "--lr", "10", *FAST, results=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    table = pd.read_csv(tmp_path / "optimizer.csv")
    assert table["status"].tolist() == ["diverged"]
    assert "diverged" in run.stdout  # the terminal table shows it
    record_file = next(records.runs_dir(tmp_path).glob("*.json"))
    stamp = record_file.stat().st_mtime_ns
    again = ablations("-k", "optimizer and sgd", "--lr", "10", *FAST, results=tmp_path)
    assert again.returncode == 0 and record_file.stat().st_mtime_ns == stamp  # reused, not recomputed


@pytest.mark.slow
def test_xdist_gives_the_same_tables(tmp_path, ablations):
    args = ["-k", "kernel or (optimizer and not sgd)", *FAST]
    serial = ablations(*args, results=tmp_path / "serial")
    parallel = ablations("-n", "2", *args, results=tmp_path / "xdist")
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stdout + parallel.stderr
    # identical, accuracies included: the smoke profile pins CPU threads (reduction order)
    cols = ["case", "seed", "status", "params", "gmacs", "gflops", "epochs_run", "best_val_top1", "test_top1", "test_top5", "cell_id"]
    for name in ("kernel", "optimizer"):
        a = pd.read_csv(tmp_path / "serial" / f"{name}.csv")
        b = pd.read_csv(tmp_path / "xdist" / f"{name}.csv")
        # D-sgd is the kernel ablation's D-3x3 cell: one record, in both tables
        assert len(a) == {"kernel": 4, "optimizer": 3}[name]
        pd.testing.assert_frame_equal(a[cols], b[cols])
    files = list(records.runs_dir(tmp_path / "xdist").glob("*.json"))
    assert len(files) == 6 and all(records.read_record(f) is not None for f in files)
    assert not list(records.runs_dir(tmp_path / "xdist").glob("*.tmp"))


@pytest.mark.slow
def test_a_users_image_folder_runs_through_the_ablations(tmp_path, ablations):
    from fixtures_data import image_folder

    root = image_folder(tmp_path / "flowers", per_class=12, classes=3)
    run = ablations("-k", "optimizer and adam", "--dataset", "imagefolder", "--data-dir", str(root),
                    "--cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--batch-size", "8",
                    results=tmp_path / "results")
    assert run.returncode == 0, run.stdout + run.stderr
    rec = records.read_record(next(records.runs_dir(tmp_path / "results").glob("*.json")))
    assert rec["config"]["model"]["num_classes"] == 3 and rec["dataset"]["name"] == "imagefolder"
