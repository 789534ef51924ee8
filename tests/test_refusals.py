"""Issue 21's second hostile round (its defects 5, 7, 8, 11-15 and the smaller items): each bad input
is refused before anything trains or is written, in one line that says what to do; each silently
wrong output now says what it is. In-process where the check is a function of the package."""
from __future__ import annotations

import argparse

import pytest

from vggbench.cells import cells_for
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
