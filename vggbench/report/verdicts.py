"""The words of a verdict and their colours, shared by the tables, the claims figure and the page."""
from __future__ import annotations

from .. import stats

NOT_RUN = "not run"              # no records of the treatment or the control: not a judgement at all
NOT_EVIDENCE = "not evidence"    # judged, but in a setting whose budget is not adequate (budget.py)
# Its premise failed: a side's nets start from another cell's trained net (the paper's from-A, S = 384
# from S = 256) and that net did not train. Not a judgement either, whatever the budget.
CANNOT_JUDGE = "cannot be judged"
VERDICTS = (*stats.VERDICTS, CANNOT_JUDGE, NOT_RUN)
VERDICT_COLOURS = {"reproduced": "#1a7f37", "contradicted": "#c0392b", "inconclusive": "#b7950b",
                   CANNOT_JUDGE: "#7d3c98", NOT_RUN: "#bbbbbb"}
GREY = "#888888"
