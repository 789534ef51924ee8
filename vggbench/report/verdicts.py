"""The words of a verdict and their colours, shared by the tables, the claims figure and the page."""
from __future__ import annotations

from .. import stats

NOT_RUN = "not run"              # no records of the treatment or the control: not a judgement at all
NOT_EVIDENCE = "not evidence"    # judged, but in a setting whose budget is not adequate (budget.py)
VERDICTS = (*stats.VERDICTS, NOT_RUN)
VERDICT_COLOURS = {"reproduced": "#1a7f37", "contradicted": "#c0392b", "inconclusive": "#b7950b",
                   NOT_RUN: "#bbbbbb"}
GREY = "#888888"
