"""The session engine without pytest (vggbench.session): what `pytest ablations` and `vggbench run` share."""
import pytest

from vggbench import session
from vggbench.errors import UsageError
from vggbench.options import Options


def test_the_cells_of_a_case_are_those_the_plugin_collects():
    cells = session.cells_of("depth", Options(epochs=1), ("depth:A", "B"))
    assert [(c.ablation, c.case, c.seed) for c in cells] == [("depth", "A", 0), ("depth", "B", 0)]
    assert session.cells_of("kernel", Options(epochs=1), ("depth:A",)) == []
    with pytest.raises(UsageError, match="ABLATION = 'dept' is not one of depth, "):
        session.cells_of("dept", Options())


def test_fail_fast_stops_after_the_first_two_cells_fail_alike():
    same = session.FailFast()
    assert same.add("RuntimeError: x") is None
    assert "RuntimeError: x" in same.add("RuntimeError: x")
    other = session.FailFast()
    assert other.add("RuntimeError: x") is None and other.add(None) is None


@pytest.mark.parametrize("err,traceback", [(ValueError("a bug"), True), (UsageError("pass --out a folder"), False)])
def test_a_report_that_fails_at_session_end_fails_the_session_a_bug_with_its_traceback(
        monkeypatch, tmp_path, err, traceback):
    import vggbench.report

    def broken(*args, **kwargs):
        raise err

    monkeypatch.setattr(vggbench.report, "build_report", broken)
    end = session.finish(Options(), set(), results_dir=str(tmp_path), report=True)
    assert end.failed and end.tables == {}
    assert end.report.startswith(f"report FAILED: {type(err).__name__}: {err}")
    assert ("Traceback (most recent call last)" in end.report) is traceback
