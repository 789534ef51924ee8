"""A record's status, one enumeration: the trainer's verdicts and "error" (the cell raised).

A `str` enumeration: records stay JSON strings, and a status compares equal to its old string
("ok" == Status.OK), so records written before it read the same. A record holds the plain string
(Status.X.value): xdist's channel carries plain types only."""
from __future__ import annotations

import enum


class Status(str, enum.Enum):
    OK = "ok"               # trained, and learned (its train loss left chance)
    DIVERGED = "diverged"   # stopped: the train loss was not finite or far above chance
    STALLED = "stalled"     # the train loss stayed near chance through the stall window
    UNJUDGED = "unjudged"   # fewer epochs than the stall window: too few to judge
    ERROR = "error"         # the cell raised; its record holds the traceback, never reused

    __str__ = str.__str__          # "ok", not "Status.OK", in f-strings and tables
    __format__ = str.__format__


TRAINED = (Status.OK, Status.DIVERGED, Status.STALLED, Status.UNJUDGED)  # what a training run can end as
USABLE = (Status.OK, Status.UNJUDGED)         # a tuning rate can be chosen from these
NO_WEIGHTS = (Status.ERROR, Status.DIVERGED)  # no trained net to start from or evaluate (a stalled one is)
