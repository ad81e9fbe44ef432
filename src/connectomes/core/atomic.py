"""Atomic writes: every file and folder the toolkit writes appears whole or not at all.

The content goes to a temporary sibling named after the process id (two processes never share
one) and is renamed into place; ``os.replace`` is atomic on POSIX, so a kill at any moment leaves
the old content or the new, never half of either. This module imports nothing of the package, so
every layer (data, evals, checkpoints) can use it without import cycles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``; on failure the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_dir(folder: str | Path, fill: Callable[[Path], T]) -> T:
    """Build a folder: ``fill(tmp)`` writes into an empty temporary folder, which then replaces
    ``folder``. Returns what ``fill`` returns."""
    folder = Path(folder)
    tmp = _tmp_sibling(folder)
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a killed process that had our id
    tmp.mkdir(parents=True)
    try:
        result = fill(tmp)
        _swap_into_place(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result


def _swap_into_place(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new``; the old folder is moved aside first and deleted last, so at no
    moment is there a half-deleted folder under the target name."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f"{target.name}.old{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old)


_DEBRIS = re.compile(r"^(?P<target>.+)\.(?P<kind>tmp|old)(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_debris(root: str | Path) -> list[Path]:
    """Remove what killed writers left below ``root``: ``X.tmp<pid>`` files and folders (never
    renamed into place) and ``X.old<pid>`` folders (superseded) of processes that are gone. An
    ``X.old<pid>`` whose ``X`` is absent (killed between the two renames of a folder swap) is the
    only whole copy, so it is renamed back instead. Call it under the run lock; returns what it removed."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            m = _DEBRIS.match(name)
            if m is None or _alive(int(m["pid"])):
                continue
            path, target = Path(dirpath) / name, Path(dirpath) / m["target"]
            if m["kind"] == "old" and not target.exists():
                os.replace(path, target)
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).exists()]
    return removed
