"""The command line: `vggbench profile` and one-line errors for bad input."""
import json

import pytest

from vggbench.cli import main

PAPER = {"A": (132_863_336, 7.609), "B": (133_047_848, 11.308), "D": (138_357_544, 15.470),
         "E": (143_667_240, 19.632)}


@pytest.mark.parametrize("config", list(PAPER))
def test_profile_json_paper_numbers(config, capsys):
    assert main(["profile", config, "--image-size", "224", "--num-classes", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    params, gmacs = PAPER[config]
    assert out["params"] == params
    assert out["gmacs"] == pytest.approx(gmacs, abs=0.01)
    assert out["gflops"] == pytest.approx(2 * out["gmacs"], rel=1e-6)


def test_profile_table(capsys):
    assert main(["profile", "A-LRN", "--bn", "--width", "0.125", "--image-size", "32", "--num-classes", "10",
                 "--head", "linear"]) == 0
    out = capsys.readouterr().out
    assert "features.3      LocalResponseNorm 8x32x32" in out
    assert "params 145,898" in out and "GMACs (fvcore)" in out


@pytest.mark.parametrize("argv,message", [
    (["profile", "F"], "invalid choice: 'F'"),
    (["profile", "D", "--width", "0"], "'0' is out of range; width must be a number > 0 and <= 16"),
    (["profile", "D", "--width", "inf"], "'inf' is out of range; width must be a number > 0 and <= 16"),
    (["profile", "D", "--width", "1e30"], "'1e30' is out of range; width must be a number > 0 and <= 16"),
    (["profile", "D", "--width", "wide"], "'wide' is not a number; width must be"),
    (["profile", "D", "--image-size", "100"], "image size 100 must be a multiple of 32"),
    (["profile", "D", "--kernels", "5x5"], "invalid choice: '5x5'"),
    (["profile", "D", "--num-classes", "1"], "'1' is out of range; num classes must be an integer >= 2"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("vggbench")


def test_vggbench_run_writes_the_records_of_pytest_ablations(ablations, tmp_path):
    """`vggbench run` is `pytest ablations` without pytest: the same options make the same cells,
    written under the same ids with the same configurations, and the same table."""
    import pandas as pd

    args = ("--case", "depth:A", "--epochs", "1")
    by_run = ablations(*args, results=tmp_path / "R1", front="vggbench")
    by_pytest = ablations(*args, results=tmp_path / "R2")
    assert by_run.returncode == 0, by_run.stdout + by_run.stderr
    assert by_pytest.returncode == 0, by_pytest.stdout + by_pytest.stderr
    written = [{p.stem: json.loads(p.read_text()) for p in (tmp_path / r / "runs").glob("*.json")} for r in ("R1", "R2")]
    assert len(written[0]) == 1 and written[0].keys() == written[1].keys()
    (cell_id, record), = written[0].items()
    assert (record["cell_id"], record["ablation"], record["case"]) == (cell_id, "depth", "A")
    assert record["config"] == written[1][cell_id]["config"]
    assert [list(pd.read_csv(tmp_path / r / "depth.csv").cell_id) for r in ("R1", "R2")] == [[cell_id]] * 2
    assert f"vggbench: depth -> {tmp_path / 'R1' / 'depth.csv'}" in by_run.stdout  # the summary of pytest's


def _report_raising(monkeypatch, err):
    import vggbench.report.build as build

    def broken(*args, **kwargs):
        raise err

    monkeypatch.setattr(build, "build_blocks", broken)


def test_a_bug_inside_vggbench_report_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    """Only a UsageError is bad input (one line, exit 2): a ValueError from a bug (pandas, torch, ours)
    propagates, and Python prints its traceback."""
    _report_raising(monkeypatch, ValueError("a bug inside the report"))
    with pytest.raises(ValueError, match="a bug inside the report") as exc:
        main(["report", "--results-dir", str(tmp_path)])
    assert exc.type is ValueError and exc.traceback  # raised, not turned into SystemExit(2)
    assert "error:" not in capsys.readouterr().err


def test_a_usage_error_inside_vggbench_report_is_one_line(monkeypatch, tmp_path, capsys):
    from vggbench.errors import UsageError

    _report_raising(monkeypatch, UsageError("no valid run records here; run `pytest ablations` first"))
    with pytest.raises(SystemExit) as exc:
        main(["report", "--results-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("vggbench report: error: no valid run records here; run `pytest ablations` "
                                       "first\n")


def test_vggbench_run_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    """`vggbench run` checks its options as `pytest ablations` does (vggbench.preflight), before any cell."""
    with pytest.raises(SystemExit) as exc:
        main(["run", "--case", "depth:Z", "--results-dir", str(tmp_path / "R")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vggbench run: error: --case depth:Z: no such case; cases are depth: A A-LRN B C D E")
    assert not (tmp_path / "R").exists()
