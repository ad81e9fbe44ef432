"""One writer per run folder: an advisory lock held by study / evolve / develop / eval / report.

The lock is ``fcntl.flock`` on ``<run>/.lock``. The kernel releases a flock when its holder exits,
however it exits (SIGKILL, OOM, power loss of a node's process), so a dead holder never blocks a
later run: the next process simply gets the lock. The file also carries JSON about the holder (pid,
host, command line, start time) so that a refused process can say who holds the folder; that text
is only advice — the flock alone decides — and a leftover text from a dead holder is overwritten.

Under torchrun only rank 0 takes the lock (ranks of one job share a run folder by design, and
rank 0 is the one that writes); other ranks enter the context without locking.

Parallel study workers take finer locks of the same kind: one per work item (a lineage's evolution, a
unit), claimed with :func:`claim` without waiting, so a worker skips what another is doing and takes
over what a dead worker left (the kernel released its flock).

Re-entrancy: a study calls stages that also take the lock. Within one process a second
``run_lock`` on the same folder is a nested hold (a counter), not a conflict; the flock is released
when the outermost hold ends. flock locks belong to the open file description, so a second
``open`` + ``flock`` in the same process would block against itself — hence the counter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from . import distributed
from .atomic import make_dirs, safe_open
from .errors import StorageError, UserError
from .readers import read_json

LOCK_NAME = ".lock"


class RunLockedError(UserError):
    """Another process is writing to the run folder."""


# lock file (resolved) -> [open lock file, hold count]; guarded so threads of one process agree
_held: dict[Path, list] = {}
_guard = threading.Lock()


def _is_lock_rank() -> bool:
    return distributed.world_size() <= 1 or distributed.is_main()


def _holder_info(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "argv": sys.argv, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def read_holder(run_dir: str | Path, name: str = LOCK_NAME) -> dict | None:
    """What the lock file says about its (last) holder; None when absent or unreadable."""
    try:
        return read_json(Path(run_dir) / name, remedy="", missing=None)
    except UserError:
        return None  # half-written by a holder killed mid-write, never written, or held by a reader


def _refusal(run_dir: Path, name: str, command: str) -> RunLockedError:
    h = read_holder(run_dir, name) or {}
    who = "another process (a reader, such as `eval` printing its results)" if not h else (
          f"process {h.get('pid', '?')} on {h.get('host', '?')} running {h.get('command', '?')!r} "
           f"({' '.join(map(str, h.get('argv', [])))}) since {h.get('since', '?')}")
    return RunLockedError(
        f"run folder {run_dir} is in use by {who}; wait for it to finish or stop it, "
        f"or use another run name — two writers would corrupt the run ({command} was not started)"
    )


def _open_shared(path: Path):
    """The lock file for a reader, opened read-only so that a run folder on read-only storage can be read;
    None when the folder does not exist yet, or the file is absent and cannot be made (read-only storage: no
    writer can take it there either)."""
    if os.path.lexists(path):
        return os.fdopen(safe_open(path, os.O_RDONLY), "r")
    if not path.parent.is_dir():
        return None  # no folder yet: nothing to read, nothing a writer could be changing
    try:
        return os.fdopen(safe_open(path, os.O_RDWR | os.O_CREAT), "r+")
    except StorageError:
        return None


def _acquire(run_dir: Path, name: str, command: str, shared: bool = False):
    if shared:
        f = _open_shared(run_dir / name)
        if f is None:
            return None
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        # never truncated before the lock is ours; never a link or a folder (safe_open refuses both)
        f = os.fdopen(safe_open(run_dir / name, os.O_RDWR | os.O_CREAT), "r+")
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise _refusal(run_dir, name, command) from None
    except BaseException:
        f.close()
        raise
    if shared:
        return f  # a reader leaves the text alone: it may not write, and a writer's text says more
    # Ours now: replace whatever a previous (possibly killed) holder left.
    f.seek(0)
    f.truncate()
    f.write(json.dumps(_holder_info(command)) + "\n")
    f.flush()
    return f


def _release(f) -> None:
    # Clear the info first so a reader never sees a finished run named as the holder; the file
    # itself stays (deleting it would let two processes flock two different inodes).
    if f is None:
        return
    try:
        if f.writable():
            f.seek(0)
            f.truncate()
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@contextlib.contextmanager
def run_lock(run_dir: str | Path, *, command: str, name: str = LOCK_NAME, shared: bool = False) -> Iterator[None]:
    """Hold the run folder for ``command`` (e.g. "evolve"); raise :class:`RunLockedError` naming
    the holder when another process has it. Nested holds in one process are allowed.

    ``name`` picks another lock file in ``run_dir``: a folder that is replaced whole (a prepared
    data folder is built aside and renamed into place) is locked from its parent, e.g.
    ``run_lock(d.parent, command="prepare", name=f".{d.name}.lock")``, since a lock file inside it
    would be swapped away with the old folder.

    ``shared``: a reader's hold (``flock`` LOCK_SH on the file opened read-only): readers exclude a writer,
    not each other, and a folder on read-only storage can be read (where the lock file cannot be made,
    nothing can write either, so the reader goes on without it). The lock file is never followed through a
    symbolic link, and a link or a folder in its place is refused by name."""
    if not _is_lock_rank():
        yield
        return
    folder = Path(run_dir).resolve()
    key = folder / name
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            if entry[2] and not shared:
                raise RuntimeError(f"{command} asks to write {folder} inside a read-only hold of it")
            entry[1] += 1
        else:
            _held[key] = [_acquire(folder, name, command, shared), 1, shared]
    try:
        yield
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(entry[0])


@contextlib.contextmanager
def claim(path: str | Path, *, command: str) -> Iterator[bool]:
    """Try to hold the lock file ``path`` for one work item, without waiting: yields True while it is held
    by this process, False when another process holds it (a study worker then skips the item for now)."""
    path = Path(path)
    make_dirs(path.parent)  # .claims/ inside the run, never through a link planted in its place
    try:
        f = _acquire(path.parent, path.name, command)
    except RunLockedError:
        yield False
        return
    try:
        yield True
    finally:
        _release(f)
