"""What the user must fix: the one exception type printed as one line (exit 2 from `vggbench`, the
usage-error exit 4 from pytest). Anything else is a bug and keeps its traceback."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input, said as one line that says what to do. A ValueError too: callers that caught
    ValueError for bad input (argparse type parsers, older code) keep working."""
