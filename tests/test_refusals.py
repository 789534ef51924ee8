"""Issue 21's second hostile round (its defects 5, 7, 8, 11-15 and the smaller items): each bad input
is refused before anything trains or is written, in one line that says what to do; each silently
wrong output now says what it is. In-process where the check is a function of the package."""
from __future__ import annotations

import argparse
import math
import re

import pytest
import torch

from vggbench.cells import cells_for, check_runnable
from vggbench.models import ModelSpec
from vggbench.pretrained import PretrainedError
from vggbench.options import MAX_SEEDS, Options
from vggbench import options as options_module


def test_seeds_are_bounded_and_case_selects_before_building():
    seeds = options_module.Options.__dataclass_fields__["seeds"].metadata["option"]["parse"]
    with pytest.raises(argparse.ArgumentTypeError, match=f"seeds must be an integer >= 1 and <= {MAX_SEEDS}"):
        seeds("100000")
    assert seeds(str(MAX_SEEDS)) == MAX_SEEDS
    only = cells_for("depth", Options(seeds=3), ("depth:A",))
    assert [(c.case, c.seed) for c in only] == [("A", 0), ("A", 1), ("A", 2)]
    every = {(c.case, c.seed): c.id for c in cells_for("depth", Options(seeds=3))}
    assert all(every[c.case, c.seed] == c.id for c in only)  # the same cells, built alone
    # a selected case that starts from another (S = 384 from S = 256, and across ablations) keeps its start
    (s512,) = cells_for("scale", Options(), ("scale:D-S256-512",))
    assert s512.start.case == "D-S384" and s512.start.start.case == "D-S256"
    assert s512.id == {c.case: c for c in cells_for("scale", Options())}["D-S256-512"].id
    assert cells_for("depth", Options(), ("optimizer:D-adam",)) == []


@pytest.fixture
def weight_files(tmp_path):
    """Files that are not torchvision VGG state dicts: another net's, a non-VGG dict, a truncated
    file, garbage, and a folder."""
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pt")
    torch.save({"a": torch.zeros(3)}, tmp_path / "nonvgg.pt")
    whole = (tmp_path / "resnet18.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"hello world" * 100)
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize("name,message", [
    ("resnet18.pt", "resnet18.pt: not a torchvision VGG state dict (e.g. against vgg16: missing classifier.0.bias)"),
    ("nonvgg.pt", "nonvgg.pt: not a torchvision VGG state dict"),
    ("truncated.pt", "truncated.pt: cannot be read as a state dict (RuntimeError: PytorchStreamReader"),
    ("garbage.pt", "garbage.pt: cannot be read as a state dict"),
])
def test_pretrained_file_that_is_no_vgg_is_refused_before_collection(weight_files, name, message):
    with pytest.raises(PretrainedError, match=re.escape(message)):
        check_runnable(Options(pretrained=str(weight_files / name)))


def test_pretrained_folder_is_called_a_folder(weight_files):
    parse = Options.__dataclass_fields__["pretrained"].metadata["option"]["parse"]
    with pytest.raises(argparse.ArgumentTypeError, match="folder: is a folder, not a file; pass torchvision"):
        parse(str(weight_files / "folder"))
    with pytest.raises(argparse.ArgumentTypeError, match="nothing.pt: no such file"):
        parse(str(weight_files / "nothing.pt"))


def test_torchvision_weights_offline_and_not_cached_are_refused_before_collection(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    asked = []

    def offline(request, timeout):
        asked.append(request.full_url)
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(PretrainedError, match=re.escape(
            "cannot download torchvision's VGG16_Weights.IMAGENET1K_V1 (https://download.pytorch.org/models/"
            "vgg16-397923af.pth: Name or service not known); offline? pass a local file with --pretrained FILE, "
            f"or put vgg16-397923af.pth into {tmp_path / 'hub' / 'checkpoints'}")):
        check_runnable(Options(pretrained="torchvision"))
    assert asked == ["https://download.pytorch.org/models/vgg16-397923af.pth"]
    # in torch.hub's cache: nothing is asked for (the transfer ablation's D and A weights)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    for name in ("vgg16-397923af.pth", "vgg11-8a719046.pth"):
        (tmp_path / "hub" / "checkpoints" / name).write_bytes(b"")
    asked.clear()
    check_runnable(Options(pretrained="torchvision"))
    assert asked == []


def test_a_cell_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    from vggbench import measure

    monkeypatch.setattr(measure, "total_bytes", lambda device: 16 * 10**9)
    with pytest.raises(measure.TooLarge, match=re.escape(
            "D-w0.125 at 2048px: a training step at batch 128 needs at least 153.0 GB; this machine has 16.0 GB "
            "of RAM: use a smaller --image-size, --batch-size or --width")):
        measure.check_fits(ModelSpec(config="D", width=0.125, image_size=2048), 128, torch.device("cpu"))
    measure.check_fits(ModelSpec(config="D", width=0.125, image_size=2048), 8, torch.device("cpu"))  # fits
    with pytest.raises(measure.TooLarge, match="and the data at 4096px 1,409.3 GB"):
        check_runnable(Options(image_size=4096))  # before the synthetic set is drawn
    check_runnable(Options())  # the smoke profile fits


def test_from_a_refuses_a_case_whose_layers_cannot_take_a_before_anything_trains():
    with pytest.raises(ValueError, match=re.escape(
            "kernel:B-large cannot start from net A (--init from-A): layer conv1_1 is a 5x5 conv 3->8 here but "
            "a 3x3 conv 3->8 in the net it starts from (kernels='large' merges")):
        check_runnable(Options(init="from-A"), ("kernel:B-large",))
    check_runnable(Options(init="from-A"), ("kernel:D-3x3",))
    cells = {c.case: c for c in cells_for("kernel", Options(init="from-A"))}
    assert "5x5 conv" in cells["B-large"].skip and cells["D-3x3"].skip is None  # a grid run skips it, saying why


@pytest.mark.parametrize("args,message", [
    (["-n", "2", "-k", "transfer", "--pretrained", "{tmp}/resnet18.pt"], "resnet18.pt: not a torchvision VGG state dict"),
    (["--image-size", "4096"], "at 4096px: a training step at batch 1 needs at least"),
    (["--init", "from-A", "--case", "kernel:B-large"], "kernel:B-large cannot start from net A (--init from-A)"),
])
def test_refused_sessions_say_one_line_exit_4_and_write_nothing(ablations, weight_files, args, message):
    results = weight_files / "results"
    run = ablations(*(a.format(tmp=weight_files) for a in args), results=results)
    assert run.returncode == 4, run.stdout + run.stderr
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr and not results.exists()


@pytest.fixture(scope="module")
def failed_tuning(tmp_path_factory):
    """`--tune lr --tune-grid 5,10 --case depth:A` (every rate diverges), run in-process; `vggbench
    status` read before, during (one rate done) and after."""
    from vggbench import notices, status
    from vggbench.run import run_cell

    results = tmp_path_factory.mktemp("tuned")
    opts = Options(tune="lr", tune_grid=(5.0, 10.0), epochs=1, train_subset=160, test_subset=100)
    (cell,) = cells_for("depth", opts, ("depth:A",))
    status.save_selection(results, [cell])
    states = [status.status(results).iloc[0].to_dict()]
    run_cell(cell.tuning_cells()[0], results)
    states.append(status.status(results).iloc[0].to_dict())
    with notices.collecting() as said:
        record = run_cell(cell, results)
    states.append(status.status(results).iloc[0].to_dict())
    return cell, opts, results, record, list(said), states


def test_status_follows_a_tuned_cell_to_its_final_record(failed_tuning):
    cell, _, _, record, _, (before, during, after) = failed_tuning
    assert (before["state"], before["cell_id"]) == ("not started", cell.id)
    assert (during["state"], during["detail"]) == ("tuning", "tuning: 1 of 2 rates done")
    assert (after["state"], after["cell_id"]) == ("done", record["cell_id"]) and record["cell_id"] != cell.id


def test_a_grid_where_every_rate_fails_is_said_and_marked_untuned(failed_tuning):
    from vggbench import records, tables

    cell, opts, results, record, said, _ = failed_tuning
    line = ("depth/A: no rate of the tuning grid (5, 10) trained (every one diverged, stalled or failed): trained at "
            "its own rate 0.02 instead, marked untuned")
    assert said == [line]
    assert record["lr"] == 0.02 and record["tuning"]["chosen_lr"] is None and not records.tuned(record["tuning"])
    assert [c["status"] for c in record["tuning"]["cells"]] == ["diverged", "diverged"]
    table = tables.aggregate(results, ["depth"], opts)["depth"]
    assert table.tuned.tolist() == [False]


def test_report_of_a_read_only_results_folder_says_to_use_out(tmp_path, capsys):
    from vggbench.cli import main

    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    results.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["report", "--results-dir", str(results)])
    finally:
        results.chmod(0o755)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"vggbench report: error: report folder {results}/report: {results} is "
                                       "read-only; pass --out a writable folder\n")
    assert sorted(p.name for p in results.iterdir()) == ["runs"]


@pytest.mark.parametrize("text,message", [
    ("0.1,,0.01", "'0.1,,0.01': an empty rate; give rates separated by single commas"),
    ("0.1,0.01,", "'0.1,0.01,': an empty rate"),
    ("0.1,0.01,0.1", "'0.1,0.01,0.1': 0.1 is given twice; give each rate once"),
    ("0.1,1e-1", "'0.1,1e-1': 0.1 is given twice"),
])
def test_tune_grid_entries_are_each_a_rate_once(text, message):
    parse = Options.__dataclass_fields__["tune_grid"].metadata["option"]["parse"]
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse(text)
    assert parse("0.1, 0.01") == (0.1, 0.01)


@pytest.mark.parametrize("opts,message", [
    (Options(tune_grid=(0.1, 0.01)), "--tune-grid is used only when rates are tuned, and the smoke profile tunes "
                                     "none by default: add --tune lr"),
    (Options(tune="lr", lr=0.01), "--tune lr and --lr do not combine: --lr fixes every cell's rate; drop one"),
    (Options(profile="cpu", tune_grid=(0.1, 0.01), lr=0.01), "--tune-grid and --lr do not combine"),
])
def test_tuning_options_that_would_be_ignored_are_refused(opts, message):
    from vggbench.cells import baseline

    with pytest.raises(ValueError, match=re.escape(message)):
        baseline(opts)


def test_stalled_says_what_it_measures_the_train_loss_not_the_test_accuracy():
    from vggbench.report.budget import DEFINITION
    from vggbench.trainer import STALL_TOLERANCE, STATUS_MEANS, TrainSpec, judge

    # the trainer's definition: a net whose train loss is 0.99 ln C at epoch 2 stalled, whatever it scores
    assert judge(0.99 * math.log(10), TrainSpec.stall_epochs, 10, TrainSpec()) == "stalled"
    assert judge((1 - STALL_TOLERANCE - 0.001) * math.log(10), TrainSpec.stall_epochs, 10, TrainSpec()) == "ok"
    assert STATUS_MEANS["stalled"] == (
        "its train loss was still within 2% of chance (ln C) after its stall window (2 epochs by default), so it "
        "was stopped; judged on the train loss alone, its test accuracy can be above chance")
    assert f"A cell *stalled* when {STATUS_MEANS['stalled']};" in DEFINITION


def test_a_full_disk_stops_the_curves_in_one_line_without_a_thread_traceback(tmp_path, monkeypatch, capfd):
    import errno

    from tensorboard.summary.writer.record_writer import RecordWriter

    from vggbench import notices
    from vggbench.curves import Curves

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(RecordWriter, "write", full_disk)
    (cell,) = cells_for("depth", Options(), ("depth:A",))
    row = {"epoch": 1, "epochs": 2, "train_loss": 2.0, "val_top1": 10.0, "lr": 0.1, "images": 10, "train_s": 1.0}
    with notices.collecting() as said:
        curves = Curves(tmp_path, cell)
        curves.epoch(row)
        curves.epoch({**row, "epoch": 2})
        curves.finish({"status": "ok", "result": {"epochs_run": 2}})
    assert said == ["curves of depth/A (seed 0) not written past here (OSError: [Errno 28] No space left on "
                    "device); the cell goes on"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_notice_is_shown_when_it_happens_once_not_again_in_the_summary():
    from vggbench import notices, progress

    shown = []
    display = progress.LineDisplay(shown.append)
    with notices.collecting(display.said) as kept:
        notices.notice("resuming x from epoch 1")
    assert shown == ["vggbench: resuming x from epoch 1"] and kept == []  # said once, when it happened
    with notices.collecting(progress.Display().said) as kept:  # --progress off: the summary says it
        notices.notice("resuming x from epoch 1")
    assert kept == ["resuming x from epoch 1"]
    bar = progress.BarDisplay(shown.append, None, 80)
    bar.bar = object()  # a bar being drawn: never written through
    assert not bar.said("waiting") and shown == ["vggbench: resuming x from epoch 1"]


def test_a_data_cache_that_cannot_fit_the_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    import collections
    import shutil as shutil_module

    from fixtures_data import image_folder
    from vggbench.data import DataError, DataSpec, load_data

    folder = image_folder(tmp_path / "flowers", per_class=10, classes=3)
    full = collections.namedtuple("usage", "total used free")(10**9, 10**9 - 10**5, 10**5)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: full)
    spec = DataSpec("imagefolder", image_size=64, data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=re.escape(
            f"image folder {folder} at 64px needs 0.0 GB in the cache (30 images) but {tmp_path / 'cache'} has 0.0 GB "
            "free: use a smaller --image-size or another --cache-dir")):
        load_data(spec)
    assert not list((tmp_path / "cache").glob("*/*.u8"))  # nothing decoded
