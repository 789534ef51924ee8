"""The bad-input catalogue: each bad input is answered with a one-line error that says what to do,
and nothing is written; corrupt records and checkpoints are detected by their checksum, set aside
and recomputed, never trusted.

  through `pytest ablations` (a usage error, exit code 4): PLUGIN_CASES below
  through `vggbench` (exit code 2): CLI_CASES below
  the Python API: an unknown optimiser
  corrupt files: a record, a checkpoint (and a half-written temporary file, see test_scaleout.py)
"""
import json

import pytest
import torch

from helpers import ROOT, files_under, usage_error
from vggbench import notices, records, run, status, tables
from vggbench.cells import cells_for
from vggbench.options import Options
from vggbench.report.settings import load_records
from vggbench.run import run_cell
from vggbench.checkpoint import Checkpoint
from vggbench.cli import main
from vggbench.trainer import TrainSpec, TrainSpecError

# (id, arguments, message); {tmp} is the test's folder. The message says what to do.
PLUGIN_CASES = [
    ("unknown profile", ["--profile", "nope"], "invalid choice: 'nope' (choose from 'cifar10', 'cpu', 'imagenet'"),
    ("unknown dataset", ["--dataset", "nope"], "unknown dataset 'nope': choose one of cifar10, cifar100"),
    ("epochs out of range", ["--epochs", "0"], "'0' is out of range; epochs must be an integer >= 1"),
    ("epochs not a number", ["--epochs", "two"], "'two' is not an integer; epochs must be an integer >= 1"),
    ("batch size out of range", ["--batch-size", "0"], "'0' is out of range; batch size must be an integer >= 1"),
    ("lr out of range", ["--lr", "0"], "'0' is out of range; lr must be a number > 0"),
    ("lr not finite", ["--lr", "inf"], "'inf' is out of range; lr must be a number > 0 and <= 10"),
    ("lr not a number", ["--lr", "nan"], "'nan' is out of range; lr must be a number > 0 and <= 10"),
    ("width out of range", ["--width", "-0.5"], "'-0.5' is out of range; width must be a number > 0"),
    ("width not finite", ["--width", "inf"], "'inf' is out of range; width must be a number > 0 and <= 16"),
    ("width absurd", ["--width", "1e30"], "'1e30' is out of range; width must be a number > 0 and <= 16"),
    ("image size not a multiple of 32", ["--image-size", "48"], "image size 48 must be a multiple of 32"),
    ("train subset out of range", ["--train-subset", "0"], "train subset must be an integer >= 1"),
    ("seeds out of range", ["--seeds", "0"], "'0' is out of range; seeds must be an integer >= 1"),
    ("unknown device", ["--device", "tpu9"], "--device 'tpu9' is not a device: use auto, cpu, cuda or cuda:N"),
    ("results dir is a file", ["--results-dir", "{tmp}/a-file"], "is a file, not a folder; choose another --results-dir"),
    ("results dir read-only", ["--results-dir", "{tmp}/read-only/results"],
     "read-only/results: {tmp}/read-only is read-only; choose another --results-dir or make it writable"),
    ("data dir does not exist", ["--data-dir", "{tmp}/no-such-dir"],
     "--data-dir {tmp}/no-such-dir: no such directory; give the folder that holds the dataset"),
    ("dataset folder does not exist", ["--dataset", "imagefolder", "--data-dir", "{tmp}/flowers"],
     "--data-dir {tmp}/flowers: no such directory"),
    ("unknown launcher", ["--launcher", "pbs"], "argument --launcher: invalid choice: 'pbs' (choose from 'inprocess'"),
    ("launcher with xdist", ["--launcher", "local", "-n", "2"], "--launcher local and -n do not combine"),
    ("no-wait in process", ["--no-wait"], "--no-wait needs --launcher local or --launcher slurm"),
    ("slurm without a cluster", ["--launcher", "slurm"], "no `srun` here; run from a Slurm login node"),
    ("slurm time out of range", ["--slurm-time", "0"], "time must be an integer number of minutes >= 1"),
    ("slurm gpus out of range", ["--slurm-gpus-per-task", "-1"], "GPUs per task must be an integer >= 0"),
    ("malformed test hook", ["env:VGGBENCH_INJECT=explode"], "VGGBENCH_INJECT='explode': cannot read 'explode'"),
    ("pretrained file does not exist", ["--pretrained", "{tmp}/no-such.pth"],
     "argument --pretrained: {tmp}/no-such.pth: no such file; pass torchvision"),
    ("unknown case", ["--case", "depth:Z"], "--case depth:Z: no such case; cases are depth: A A-LRN B C D E"),
]
if not torch.cuda.is_available():
    PLUGIN_CASES.append(("cuda without a GPU", ["--device", "cuda"], "CUDA is not available: use --device cpu"))


@pytest.mark.parametrize("args,message", [c[1:] for c in PLUGIN_CASES], ids=[c[0] for c in PLUGIN_CASES])
def test_plugin_bad_input(args, message, tmp_path, monkeypatch):
    """In-process: the checks `pytest ablations` runs before collection (vggbench.preflight)."""
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "read-only").mkdir()
    (tmp_path / "read-only").chmod(0o555)
    before = files_under(tmp_path)
    for name, value in (a[4:].split("=", 1) for a in args if a.startswith("env:")):
        monkeypatch.setenv(name, value)
    args = [a.format(tmp=tmp_path) for a in args if not a.startswith("env:")]
    if "--results-dir" not in args:
        args += ["--results-dir", str(tmp_path / "results")]
    try:
        error = usage_error(args)
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert message.format(tmp=tmp_path) in error and "\n" not in error  # the whole answer on one line
    assert files_under(tmp_path) == before  # nothing written


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "argument --epochs: '0' is out of range; epochs must be an integer >= 1"),
    (["--device", "tpu9"], "--device 'tpu9' is not a device: use auto, cpu, cuda or cuda:N"),
])
def test_a_usage_error_is_one_line_exit_4_and_nothing_written(args, message, tmp_path, ablations):
    """End to end, for an option parsed by pytest and one checked by vggbench's configure."""
    run = ablations("--collect-only", *args, results=tmp_path / "results")
    assert run.returncode == 4, run.stdout + run.stderr
    assert len([line for line in run.stderr.splitlines() if message in line]) == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not any(tmp_path.iterdir())


CLI_CASES = [
    ("collect without a session", ["collect", "--results-dir", "{tmp}/empty"],
     "no session in {tmp}/empty (no session.json): run `pytest ablations --results-dir {tmp}/empty` first"),
    ("collect into a file", ["collect", "--results-dir", "{tmp}/a-file"], "is a file, not a folder"),
    ("collect a corrupt session", ["collect", "--results-dir", "{tmp}/bad-session"],
     "session.json is not readable (JSONDecodeError): run `pytest ablations --results-dir"),
    ("collect an unknown ablation", ["collect", "--ablation", "width"], "invalid choice: 'width' (choose from"),
    ("unknown config", ["profile", "F"], "argument config: invalid choice: 'F' (choose from"),
    ("model too large to profile", ["profile", "D", "--width", "16", "--image-size", "224"],
     "D-w16 at 224px has 34,432,841,704 parameters (3,938.6 GMACs): building it would need 128.3 GiB of float32 "
     "weights, more than the 4 GiB `vggbench profile` builds; give a smaller --width or --image-size"),
    ("model too large to benchmark", ["bench", "throughput", "E", "--width", "16", "--image-size", "224"],
     "E-w16 at 224px has 5,128,520,714 parameters (4,973.4 GMACs): building it would need 19.1 GiB"),
    ("unknown dataset to prepare", ["data", "prepare", "mnist"], "invalid choice: 'mnist' (choose from"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv, message, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad-session").mkdir()
    (tmp_path / "bad-session" / "session.json").write_text('{"options": {"profile": "sm')
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([a.format(tmp=tmp_path) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if message.format(tmp=tmp_path) in line]) == 1, err
    assert "Traceback" not in err
    assert files_under(tmp_path) == before


def test_unknown_optimiser_is_one_line():
    with pytest.raises(TrainSpecError) as exc:
        TrainSpec(optimizer="rmsprop")
    assert str(exc.value) == "unknown optimizer 'rmsprop': choose one of sgd, adam, adagrad"


# ------------------------------------------------------------------------------ corrupt files

SAME = ("cell_id", "config", "status", "result", "params", "gmacs", "gflops", "train_batch_size")


def same(record: dict) -> dict:
    """What a recomputed cell reproduces exactly: all of SAME but the per-epoch wall times."""
    out = {k: record[k] for k in SAME}
    out["result"] = {**out["result"], "history": [{k: v for k, v in h.items() if k != "epoch_s"}
                                                  for h in out["result"]["history"]]}
    return out
OPTS = Options(epochs=2, batch_size=32, lr=0.005, train_subset=160, test_subset=100)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    cell = next(c for c in cells_for("batchnorm", OPTS) if c.case == "A-bn")
    return cell, run_cell(cell, tmp_path_factory.mktemp("clean"))


def test_corrupt_record_is_set_aside_and_recomputed(tmp_path, clean):
    cell, ref = clean
    path = records.record_path(tmp_path, cell.id)
    records.write_record(path, {k: v for k, v in ref.items() if k != "reused"})
    data = json.loads(path.read_text())
    data["result"]["test"]["top1"] = 99.9  # edited by hand, or damaged: the checksum no longer matches
    path.write_text(json.dumps(data))
    rec = run_cell(cell, tmp_path)
    assert rec["reused"] is False  # recomputed, not trusted
    assert same(rec) == same(ref)
    aside = list(path.parent.glob(f"{path.name}.*.corrupt"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["result"]["test"]["top1"] == 99.9


def test_corrupt_checkpoint_is_set_aside_and_the_cell_starts_over(tmp_path, clean, monkeypatch):
    cell, ref = clean
    real_train = run.train

    class Killed(BaseException):  # like a kill: not an error record, the checkpoint stays
        pass

    def killed_in_epoch_2(row):  # after epoch 1's checkpoint
        if row["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(run, "train", lambda *a, **k: real_train(*a, **{**k, "on_epoch": killed_in_epoch_2}))
    with pytest.raises(Killed):
        run_cell(cell, tmp_path)
    monkeypatch.setattr(run, "train", real_train)
    ckpt = records.record_path(tmp_path, cell.id).with_suffix(".ckpt")
    blob = bytearray(ckpt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in the weights
    ckpt.write_bytes(bytes(blob))

    resumed_from, real_load = [], Checkpoint.load

    def load(self, **kw):
        resumed_from.append(real_load(self, **kw))
        return resumed_from[-1]

    monkeypatch.setattr(Checkpoint, "load", load)
    rec = run_cell(cell, tmp_path)
    assert resumed_from == [None]  # the damaged checkpoint was not used
    assert same(rec) == same(ref)
    assert len(list(ckpt.parent.glob(f"{ckpt.name}.*.corrupt"))) == 1 and not ckpt.exists()


def test_record_of_another_cell_is_never_reused(tmp_path, clean):
    """`cp runs/<D>.json runs/<A>.json`: a valid checksum, but the record is D's: set aside, one line,
    and A's table row is not D's."""
    cell, ref = clean
    other = next(c for c in cells_for("batchnorm", OPTS) if c.case == "A-plain")
    path = records.record_path(tmp_path, other.id)
    records.write_record(records.record_path(tmp_path, cell.id), {k: v for k, v in ref.items() if k != "reused"})
    path.write_bytes(records.record_path(tmp_path, cell.id).read_bytes())
    with notices.collecting() as said:
        assert tables.aggregate(tmp_path, ["batchnorm"], OPTS)["batchnorm"].case.tolist() == ["A-bn"]
        assert said == [f"{path} is not this cell's record (it holds cell {cell.id}'s): skipped; running its cell "
                        "again sets it aside"]
    with notices.collecting() as said:
        row = {"cell_id": other.id, "ablation": "batchnorm", "case": "A-plain", "seed": 0, "epochs": 2}
        assert status.cell_state(tmp_path, row, None)["state"] == "not started" and len(said) == 1
    with notices.collecting() as said:
        assert run.finished_record(other, tmp_path, set_aside_corrupt=True) is None
    aside = list(path.parent.glob(f"{path.name}.*.corrupt"))
    assert not path.exists() and len(aside) == 1 and len(said) == 1 and "set aside as" in said[0]


@pytest.mark.parametrize("edit,why", [
    (lambda r: r["config"]["train"].update(epochs=99), "its configuration does not hash to its name: edited"),
    (lambda r: r["config"]["model"].update(batch_norm=False), "its configuration does not hash to its name"),
    (lambda r: r["config"].pop("train"), "malformed (config.train missing)"),
    (lambda r: r.update(params="lots"), "malformed (params is str, not int)"),
    (lambda r: r["result"].update(test=[1]), "malformed (result.test is list, not an object)"),
])
def test_edited_record_with_recomputed_checksum_is_set_aside(tmp_path, clean, edit, why):
    """A record edited by hand and checksummed again with records.write_record: never reused, never
    in a table, the report or `vggbench status`, and no traceback in any of them."""
    cell, ref = clean
    record = json.loads(json.dumps({k: v for k, v in ref.items() if k != "reused"}))
    edit(record)
    path = records.record_path(tmp_path, cell.id)
    records.write_record(path, record)
    with notices.collecting() as said:
        assert tables.aggregate(tmp_path, ["batchnorm"], OPTS)["batchnorm"].empty
        with pytest.raises(ValueError, match="no valid run records"):
            load_records(tmp_path)
        assert [line for line in said if why in line] == said and len(said) == 2
    with notices.collecting() as said:
        assert run.finished_record(cell, tmp_path, set_aside_corrupt=True) is None
    assert not path.exists() and len(list(path.parent.glob(f"{path.name}.*.corrupt"))) == 1
    assert len(said) == 1 and why in said[0] and "set aside as" in said[0]


# ------------------------------------------------------------------------------ data that is not what it says

def test_data_not_what_its_name_says_is_one_usage_error(tmp_path, ablations):
    """--dataset cifar100 (and tiny-imagenet) on a CIFAR-10 copy; cifar10 on a repository; an
    unprepared read-only cache: exit 4, one line, no traceback, no cache entry."""
    from fixtures_data import cifar_pickles
    from vggbench.data.sources import CIFAR10_NAMES

    c10, _ = cifar_pickles(tmp_path / "c10", per_batch=20, classes=10, names=list(CIFAR10_NAMES))
    (tmp_path / "ro-cache").mkdir()
    (tmp_path / "ro-cache").chmod(0o555)
    cases = [(["--dataset", "cifar100", "--data-dir", c10], "has 10 classes, but cifar100 has 100: give the cifar100 "
                                                             "data, or --dataset imagefolder"),
             (["--dataset", "tiny-imagenet", "--data-dir", c10], "has 10 classes, but tiny-imagenet has 200"),
             (["--dataset", "cifar10", "--data-dir", ROOT], "ablations: a class folder without images"),
             (["--dataset", "cifar10", "--data-dir", c10, "--cache-dir", tmp_path / "ro-cache"],
              f"cache dir {tmp_path / 'ro-cache'} is not writable")]
    for args, message in cases:
        cache = [] if "--cache-dir" in args else ["--cache-dir", tmp_path / "cache"]
        run = ablations("--collect-only", *args, *cache, results=tmp_path / "results")
        out = run.stdout + run.stderr
        assert run.returncode == 4 and len([line for line in out.splitlines() if message in line]) == 1, out
        assert "Traceback" not in out
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name != ".locks"]
    assert not (tmp_path / "results").exists() and not list((tmp_path / "ro-cache").iterdir())
    (tmp_path / "ro-cache").chmod(0o755)
