"""Recovery made visible: one line each time vggbench repairs or waits on something by itself
(a corrupt record or checkpoint set aside, a resume from a checkpoint, a lock held by another
process, records of an older identity left unused).

Outside a collector a notice goes to stderr at once (the `vggbench` command). Under pytest the
`measured` fixture collects a cell's notices (`collecting`) and conftest prints them in the session
summary, from xdist workers too (they travel as the test's user properties).
"""
from __future__ import annotations

import contextlib
import os
import sys

from filelock import FileLock, Timeout

_collectors: list[list[str]] = []


def notice(message: str) -> None:
    """One line: to the innermost collector, else to stderr."""
    if _collectors:
        _collectors[-1].append(message)
    else:
        print(f"vggbench: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def collecting():
    """The notices given inside the block, as a list (filled as they come)."""
    out: list[str] = []
    _collectors.append(out)
    try:
        yield out
    finally:
        _collectors.remove(out)


@contextlib.contextmanager
def locked(path: str | os.PathLike, what: str):
    """Hold the file lock at path; if another process holds it, say so once, then wait."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        notice(f"waiting for {what}: another process holds {path}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
