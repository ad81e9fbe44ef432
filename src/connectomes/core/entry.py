"""The one error boundary of every entry point: the command line, a study worker process, a SLURM job.

A user's mistake or damaged file (UserError) and a write the storage refused are one line on stderr and
exit status 2, whichever process met them: a worker started by a study is a process of its own, and
without this boundary its errors reached the user as Python tracebacks (issue 34). Anything else is a bug
and keeps its traceback. This module imports only core's errors and atomic writes, so every layer's
entry point can use it.
"""

from __future__ import annotations

import sys
from typing import Callable

from .atomic import storage_error
from .errors import UserError

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130


def guarded(fn: Callable[[], int | None], *, prefix: str = "") -> int:
    """Run ``fn`` and return its exit status (None counts as 0); a UserError, or an OSError the storage
    caused, prints ``error: <one line>`` (after ``prefix``, e.g. a worker's name) and returns 2; Ctrl-C
    returns 130 with how to continue."""
    try:
        return fn() or 0
    except UserError as e:
        return _say(f"{prefix}error: {e}")
    except OSError as e:  # a write the storage refused outside the atomic writers (a folder made, a lock taken)
        err = storage_error(e, e.filename or "a file")
        if err is None:
            raise
        return _say(f"{prefix}error: {err}")
    except KeyboardInterrupt:
        print(f"{prefix}interrupted; re-run the same command to continue from the last checkpoint", file=sys.stderr)
        return INTERRUPTED_EXIT


def _say(line: str) -> int:
    print(line, file=sys.stderr, flush=True)
    return USER_ERROR_EXIT
