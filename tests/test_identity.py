"""A record is what it says it is: a cell's id covers the data's content (not only the dataset's
name), so other data is never answered with a stored record; every record says how it was made
(provenance); records of the identity before this existed are not used, and the session says so.
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fixtures_data import image_folder
from helpers import CIFAR10
from vggbench import records, tables
from vggbench.grid import ABLATIONS
from vggbench.cli import main
from vggbench.cells import cells_for
from vggbench.options import Options
from vggbench.run import problems, run_cell

QUICK = dict(epochs=1, batch_size=16, dataset="imagefolder")


def noise_copy(src, dst, seed=0):
    """The same class folders and file names as src, every image replaced by random pixels."""
    rng = np.random.default_rng(seed)
    for p in sorted(src.rglob("*.png")) + sorted(src.rglob("*.jpg")):
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).convert("RGB").save(out, format="PNG")
    return dst


def cell(data_dir, cache, **kw):
    opts = Options(**{**QUICK, **kw}, data_dir=str(data_dir), cache_dir=str(cache))
    return next(c for c in cells_for("batchnorm", opts) if c.case == "A-bn")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    one = image_folder(root / "one", per_class=10)
    two = noise_copy(one, root / "two")
    return one, two, root / "cache"


def test_two_folders_with_the_same_classes_are_two_data_sets(folders, tmp_path):
    one, two, cache = folders
    a, b = cell(one, cache), cell(two, cache)
    assert (a.data.dataset, a.model.num_classes) == (b.data.dataset, b.model.num_classes) == ("imagefolder", 3)
    assert a.data.fingerprint != b.data.fingerprint and a.id != b.id
    first = run_cell(a, tmp_path)
    second = run_cell(b, tmp_path)  # the same results dir, one after the other
    assert first["reused"] is False and second["reused"] is False  # the second trains on its own data
    assert problems(first) == [] and problems(second) == []
    assert first["provenance"]["data_source"]["origin"] == f"image folder {one.resolve()}"
    assert second["provenance"]["data_source"]["origin"] == f"image folder {two.resolve()}"
    assert second["dataset"]["source"].startswith(f"image folder {two.resolve()}")
    loss = [r["result"]["history"][0]["train_loss"] for r in (first, second)]
    assert loss[0] != loss[1]
    assert len(list(records.runs_dir(tmp_path).glob("*.json"))) == 2


def test_the_same_data_in_two_places_shares_an_id_and_skip_bad_is_part_of_it(folders, tmp_path):
    one, _, cache = folders
    copy = shutil.copytree(one, tmp_path / "copy")
    assert cell(copy, cache).id == cell(one, cache).id  # identical images elsewhere: one cell
    assert cell(one, cache, skip_bad=True).id != cell(one, cache).id


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10.is_dir(), reason=f"no real CIFAR-10 at {CIFAR10}")
def test_a_toy_parquet_copy_and_the_real_cifar10_are_two_data_sets(tmp_path):
    """300 images of CIFAR-10 written in the hub's layout vs the whole of it: the toy's record is
    never reused for the real data."""
    import datasets

    toy = tmp_path / "toy"
    for split, n in (("train", 250), ("test", 50)):
        (part,) = CIFAR10.glob(f"*/{split}-*.parquet")
        ds = datasets.Dataset.from_parquet(str(part), cache_dir=str(tmp_path / "hf")).select(range(n))
        (toy / "plain_text").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(toy / "plain_text" / part.name))
    opts = dict(dataset="cifar10", epochs=1, train_subset=200, test_subset=40)
    small = cells_for("batchnorm", Options(**opts, data_dir=str(toy), cache_dir=str(tmp_path / "cache")))[0]
    real = cells_for("batchnorm", Options(**opts, data_dir=str(CIFAR10)))[0]  # the user's cache: decoded once
    assert small.data.identity() == {**real.data.identity(), "fingerprint": small.data.fingerprint}
    assert small.data.fingerprint != real.data.fingerprint and small.id != real.id
    toy_record, real_record = run_cell(small, tmp_path), run_cell(real, tmp_path)
    assert real_record["reused"] is False
    assert real_record["dataset"]["sizes"]["val"] == 5000 and toy_record["dataset"]["sizes"]["val"] == 25
    assert real_record["provenance"]["data_source"]["origin"] == f"parquet directory {CIFAR10.resolve()}"
    assert toy_record["result"]["history"] != real_record["result"]["history"]


def test_provenance_names_the_profile_even_when_the_numbers_look_like_another(tmp_path, capsys):
    """--profile cifar10 shrunk to the smoke settings: its configuration differs from smoke's in one
    field (augment) and from cifar10's in four, but the record says cifar10, with the overrides."""
    given = dict(profile="cifar10", dataset="synthetic", width=0.125, epochs=1, batch_size=64, train_subset=200,
                 test_subset=100)
    c = next(c for c in cells_for("depth", Options(**given)) if c.case == "A")
    smoke = next(c for c in cells_for("depth", Options(epochs=1, train_subset=200, test_subset=100)) if c.case == "A")
    differs = {k for k, v in c.config()["train"].items() if smoke.config()["train"][k] != v}
    assert differs == {"augment"} and c.config()["model"] == smoke.config()["model"]
    rec = run_cell(c, tmp_path)
    prov = records.provenance(rec)
    assert prov["profile"] == "cifar10"
    assert prov["overrides"] == {k: v for k, v in given.items() if k != "profile"}
    assert prov["data_source"] == {"dataset": "synthetic", "data_dir": None,
                                   "origin": "generated in memory (vggbench.synthetic)"}
    assert (prov["resumed"], prov["resumed_from_epoch"], prov["attempts"]) == (False, None, 1)
    assert prov["wall_s_total"] == rec["wall_s"] and prov["version"] == "0.1.0"
    assert records.provenance({"config": {}}) == dict.fromkeys(prov)  # an old record: unknown, not guessed
    tables.save_session(tmp_path, Options(**given), ["depth"])
    assert main(["collect", "--results-dir", str(tmp_path)]) == 0  # collect reads the field, too
    assert capsys.readouterr().out.startswith("depth: 1 of 6 cells have records (unjudged 1; profile cifar10)")
    assert pd.read_csv(tmp_path / "depth.csv")[["case", "profile", "attempts"]].values.tolist() == [["A", "cifar10", 1]]


@pytest.mark.slow
def test_records_of_an_older_identity_are_not_used_and_the_session_says_so(tmp_path, ablations):
    results = tmp_path / "results"
    c = next(c for c in cells_for("batchnorm", Options(epochs=1, train_subset=100, test_subset=50)) if c.case == "A-bn")
    old = {"cell_id": "0123456789abcdef", "config": {**c.config(), "data": {"dataset": "synthetic", "image_size": 32,
           "train_subset": 100, "test_subset": 50}}, "status": "ok", "result": {"test": {"top1": 99.0}}}
    records.write_record(records.record_path(results, old["cell_id"]), old)
    run = ablations("--case", "batchnorm:A-bn", "--epochs", "1", "--train-subset", "100", "--test-subset", "50",
                    results=results)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"1 passed, {len(ABLATIONS) - 1} deselected" in run.stdout  # --case builds only its cell
    line = f"vggbench: 1 records of an older identity in {results}/runs/ were not used"
    assert [x for x in run.stdout.splitlines() if x.startswith(line)], run.stdout
    assert json.loads(records.record_path(results, old["cell_id"]).read_text())["result"]["test"]["top1"] == 99.0
    assert len(list(records.runs_dir(results).glob("*.json"))) == 2  # the cell ran; the old record is left as it was


def test_the_compile_backend_is_part_of_a_compiled_cells_identity_only(monkeypatch):
    """$VGGBENCH_COMPILE_BACKEND changes what a compiled cell runs: a record made with the CPU tests'
    eager backend is never reused by an inductor run. Uncompiled cells keep their ids."""
    from vggbench import compiled

    def one(**kw):
        return next(c for c in cells_for("depth", Options(epochs=1, **kw)) if c.case == "A")

    monkeypatch.delenv(compiled.BACKEND_ENV, raising=False)
    inductor, uncompiled = one(compile=True), one()
    assert inductor.config()["train"]["compile_backend"] == "inductor"
    assert "compile_backend" not in uncompiled.config()["train"]
    ids = inductor.id, uncompiled.id  # an id is computed when asked: under the environment of then
    monkeypatch.setenv(compiled.BACKEND_ENV, "eager")
    assert one(compile=True).config()["train"]["compile_backend"] == "eager"
    assert one(compile=True).id != ids[0]
    assert one().id == ids[1]  # not compiled: the backend changes nothing, so not its id
