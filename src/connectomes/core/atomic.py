"""Atomic, contained writes: every file and folder the toolkit writes appears whole or not at all,
only where it was asked to, and a write that fails says which file and why in one line.

The content goes to a temporary sibling named after the process id (two processes never share
one) and is renamed into place; ``os.replace`` is atomic on POSIX, so a kill at any moment leaves
the old content or the new, never half of either. The temporary file is created exclusively and
without following a symbolic link (:func:`safe_open`), and the rename replaces a link in the target's
place instead of writing through it, so a planted link never makes the toolkit write outside the
folder it writes into. A write that fails because the storage is full or read-only is a
:class:`StorageError` naming the file; the temporary is removed and the old file is untouched. This
module imports nothing of the package but its errors, so every layer can use it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Callable, TypeVar

from .errors import StorageError, UserError

T = TypeVar("T")

# Causes that lie with the storage, not with the toolkit: full, over quota, read-only, not permitted.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# Libraries that write by themselves (safetensors, torch.save) report a full disk in their own words;
# a write that failed with less than this left on its file system is taken to have failed for space.
LOW_SPACE_BYTES = 1 << 20
NOTHING_LOST = ("the files already in place are unchanged (nothing good was lost); free space or make the folder "
                "writable, then re-run the same command")


def _storage_state(path: Path) -> str | None:
    """Why the file system holding ``path`` cannot take a write (read-only, full), or None."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only file system"
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    return f"no space left on device: {free:,} bytes free" if free < LOW_SPACE_BYTES else None


def storage_error(exc: BaseException, path: str | Path) -> StorageError | None:
    """``exc``, raised while writing ``path``, as one line naming the file when the storage caused it; None otherwise."""
    if isinstance(exc, UserError):
        return exc if isinstance(exc, StorageError) else None  # already one line saying what to do
    path = Path(path)
    if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY):
        return StorageError(f"cannot write {path}: a folder is in the way of the file or a file in the way of a folder; "
                            "move it aside, then re-run the same command")
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        why = exc.strerror
    elif isinstance(exc, OSError) and exc.errno is not None:
        return None  # another cause, said by its errno
    elif isinstance(exc, Exception):
        why = _storage_state(path)
        if why is None:
            return None
    else:
        return None  # KeyboardInterrupt, SystemExit: not a write failure
    return StorageError(f"cannot write {path} ({why}); {NOTHING_LOST}")


def safe_open(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` for writing that never follows a symbolic link in ``path``'s place and refuses anything
    but a regular file there (a folder, a pipe); failures are one :class:`StorageError` line naming ``path``."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StorageError(f"{path} is a symbolic link; the toolkit never writes through one (it could point "
                               "outside the folder): remove the link, then re-run the same command") from None
        err = storage_error(e, path)
        if err is None:
            raise
        raise err from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{path} is not a regular file (a pipe or device is in its place); remove it, then re-run")
    os.set_blocking(fd, True)
    return fd


def make_dirs(folder: str | Path, root: str | Path | None = None) -> Path:
    """``folder`` and the folders above it up to ``root``, made one component at a time without following a
    symbolic link: a link (or a file) in place of any of them is a StorageError naming it, so a link planted
    anywhere inside a run (``report/anatomy``, ``.claims``, ``slurm``) never sends a write outside it.
    ``root`` defaults to the run folder holding ``folder`` (:func:`run_root`); ``root`` itself is the user's
    to place, and may be a link."""
    folder = Path(folder).absolute()
    root = run_root(folder) if root is None else Path(root).absolute()
    if folder != root and root not in folder.parents:
        raise ValueError(f"{folder} is not inside {root}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, root) or e from None
    at = root
    for part in folder.relative_to(root).parts:
        at = at / part
        try:
            os.mkdir(at)
        except OSError as e:  # something is there already (checked below), else the storage refused
            if not os.path.lexists(at):
                raise storage_error(e, at) or e from None
        st = os.lstat(at)
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"{at} is a symbolic link; the toolkit never writes through one (it could point "
                               "outside the run folder): remove the link, then re-run the same command")
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"cannot write into {at}: a file is in the way of a folder; move it aside, then re-run "
                               "the same command")
    return folder


def run_root(path: str | Path) -> Path:
    """The outermost folder above ``path`` that holds a run's config.yaml (the run folder), else the nearest
    existing folder above it: the folders below it are the toolkit's, and are made by :func:`make_dirs`. The outermost, so
    that a link inside a run pointing at another run folder is not taken for the root."""
    path = Path(path).absolute()
    for folder in reversed(path.parents):
        if os.path.isfile(folder / "config.yaml") and not os.path.islink(folder / "config.yaml"):
            return folder
    existing = path.parent
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    return existing


def append_line(path: str | Path, line: str) -> None:
    """Append one line to ``path`` (created if absent) through :func:`safe_open`, unbuffered: a full disk
    leaves at most a cut last line (readers drop it, core.readers.read_jsonl) and is one StorageError."""
    fd = safe_open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        data = line.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    except OSError as e:
        raise storage_error(e, path) or e from None
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder; a storage that refuses is left as it is."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # read-only storage: nothing was created there either


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_as_umask(path: Path) -> None:
    """Give a file the toolkit wrote the permissions a plain ``open`` would (0o666 less the umask): libraries
    that write through a private temporary file (safetensors) leave 0o600, which colleagues sharing a
    cluster folder cannot read. A link is left alone (never followed)."""
    if not path.is_symlink() and path.is_file():
        os.chmod(path, 0o666 & ~current_umask())


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``; on failure the
    temporary file is removed and ``path`` is untouched (a storage failure is a StorageError naming ``path``)."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        _remove(tmp)  # left by a killed process that had our id, or planted: either way not ours to follow
        os.close(safe_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        write(tmp)
        share_as_umask(tmp)
        os.replace(tmp, path)
    except Exception as e:
        err = storage_error(e, path)
        if err is None:
            raise
        raise err from None
    finally:
        _remove(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_dir(folder: str | Path, fill: Callable[[Path], T]) -> T:
    """Build a folder: ``fill(tmp)`` writes into an empty temporary folder, which then replaces
    ``folder``. Returns what ``fill`` returns."""
    folder = Path(folder)
    tmp = _tmp_sibling(folder)
    try:
        _remove(tmp)  # left by a killed process that had our id
        tmp.mkdir(parents=True)
        result = fill(tmp)
        for dirpath, _, filenames in os.walk(tmp):
            for name in filenames:
                share_as_umask(Path(dirpath) / name)
        _swap_into_place(tmp, folder)
    except Exception as e:
        err = storage_error(e, folder)
        if err is None:
            raise
        raise err from None
    finally:
        _remove(tmp)
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
    _remove(old)  # a link planted in the target's place is unlinked, never followed


_DEBRIS = re.compile(r"^(?P<target>.+)\.(?P<kind>tmp|old)(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_siblings(target: str | Path) -> list[Path]:
    """Remove ``target``'s own temporaries (``<target>.tmp<pid>``) left by writers that are gone, for a
    folder written outside any run folder (an export), where no run lock makes sweep_debris safe."""
    target = Path(target)
    removed = []
    for p in target.parent.iterdir() if target.parent.is_dir() else []:
        m = _DEBRIS.match(p.name)
        if m and m["target"] == target.name and m["kind"] == "tmp" and not _alive(int(m["pid"])):
            _remove(p)
            removed.append(p)
    return removed


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
            if m["kind"] == "old" and not target.exists() and not path.is_symlink():
                os.replace(path, target)
                continue
            _remove(path)
            removed.append(path)
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).exists()]
    return removed
