"""Recovery made visible: one line each time vggbench repairs or waits on something by itself
(a corrupt record or checkpoint set aside, a resume from a checkpoint, a lock held by another
process, records of an older identity left unused).

Outside a collector a notice goes to stderr at once (the `vggbench` command). Under pytest the
`measured` fixture shows a cell's notices when they happen, on the progress display (its line
under the test's dots, or a worker's stderr line); what the display cannot show (--progress off,
while a bar is drawn) the plugin prints in the session summary, from xdist workers too (they travel
as the test's user properties).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable

from filelock import FileLock, Timeout

_collectors: list[tuple[list[str], Callable[[str], bool] | None]] = []


def notice(message: str) -> None:
    """One line: shown at once by the innermost collector's echo, else kept in its list; with no
    collector, to stderr."""
    if _collectors:
        out, echo = _collectors[-1]
        if echo is None or not echo(message):
            out.append(message)
    else:
        print(f"vggbench: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def collecting(echo: Callable[[str], bool] | None = None):
    """The notices given inside the block, as a list (filled as they come). echo: shows a notice
    when it happens and says whether it did; one it showed is not kept (said once)."""
    out: list[str] = []
    entry = (out, echo)
    _collectors.append(entry)
    try:
        yield out
    finally:
        _collectors.remove(entry)


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
