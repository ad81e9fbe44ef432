"""`connectomes data fetch`: every file of a data set from its pinned source into the data folder, checked.

A file is downloaded into ``<file>.part`` beside its place and renamed into place only once its size and
sha256 are the manifest's, so the data folder never holds half a file or one with other bytes. A download
that stops (a dropped connection, a kill) leaves the ``.part``; the next fetch asks the server for the
rest (an HTTP Range request) instead of starting again. A ``.part`` whose bytes turn out wrong is
removed, so a retry starts clean. http(s):// and file:// URLs take the same path (tests serve the sources
from local files; a cluster without internet can fetch from a colleague's copy with ``--mirror``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from ..core.atomic import atomic_write, share_as_umask
from ..core.errors import DataError
from .catalog import BUILDS, DataFile, DataSet, sha256_of

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "connectomes-data-fetch"


@dataclass
class FetchReport:
    name: str
    fetched: int = 0  # files downloaded (or built) this time
    present: int = 0  # files already there with the right sha256
    bytes: int = 0  # bytes downloaded this time


def _open(url: str, offset: int) -> tuple[BinaryIO, int, int | None]:
    """(stream, the offset it starts at, total size if known): from ``offset`` when the source can start
    there (a file, or a server that honours Range), else from 0."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        f = open(urllib.request.url2pathname(parts.path), "rb")
        total = os.fstat(f.fileno()).st_size
        f.seek(min(offset, total))
        return f, min(offset, total), total
    if parts.scheme not in ("http", "https"):
        raise DataError(f"cannot fetch {url}: only http(s):// and file:// sources are supported")
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # asked past the end: the .part already holds the whole file
            return _Empty(), offset, offset
        raise DataError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot fetch {url}: {getattr(e, 'reason', e)} (no network? `--mirror` fetches from "
                        "another copy of the data folder)") from None
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        start = int(resp.headers.get("Content-Range", f"bytes {offset}-").split()[1].split("-")[0])
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        return resp, start, int(total) if total.isdigit() else None
    return resp, 0, int(length) if length and length.isdigit() else None  # the server ignored Range


class _Empty:
    def read(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             size: int | None = None) -> int:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check its size and digest, rename it into place
    with the user's umask. Returns the bytes downloaded now. A stopped download keeps its .part and says
    to re-run; a wrong digest removes the .part; either way ``dest`` is not created."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    stream, start, total = _open(url, have)
    got = 0
    try:
        with open(part, "r+b" if start and part.exists() else "wb") as f:
            f.seek(start)
            f.truncate()
            while chunk := stream.read(CHUNK):
                f.write(chunk)
                got += len(chunk)
    except (http.client.IncompleteRead, OSError) as e:
        raise DataError(f"the download of {url} stopped at {start + got:,} bytes ({type(e).__name__}); "
                        f"{part} keeps them: run the same command again to fetch the rest") from None
    finally:
        stream.close()
    have = part.stat().st_size
    expect = size if size is not None else total
    if expect is not None and have < expect:
        raise DataError(f"the download of {url} ended at {have:,} of {expect:,} bytes; {part} keeps them: "
                        "run the same command again to fetch the rest")
    algo, want = ("sha256", sha256) if sha256 else ("md5", md5)
    if want is not None:
        h = hashlib.new(algo)
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != want or (size is not None and have != size):
            part.unlink()
            raise DataError(f"{url} is not the pinned file ({algo} {h.hexdigest()}, {have:,} bytes; the manifest pins "
                            f"{want}{f', {size:,} bytes' if size is not None else ''}); removed it. The source changed "
                            "or the transfer was corrupted: retry, or report the source in the manifest")
    share_as_umask(part)
    os.replace(part, dest)
    return got


def mirror_url(mirror: str, ds: DataSet, f: DataFile) -> str:
    """A file's URL in a copy of a data folder laid out as the toolkit reads it (a path or URL prefix)."""
    if "://" not in mirror:
        mirror = Path(mirror).resolve().as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.quote(f"{ds.name}/{f.path}")


def fetch_set(ds: DataSet, root: Path, *, mirror: str | None = None,
              say: Callable[[str], None] = print) -> FetchReport:
    """Every file of ``ds`` into ``root/ds.name``: present and right ones are kept, missing ones fetched;
    a present file with other bytes is an error (it may be the user's; it is never overwritten)."""
    rep = FetchReport(ds.name)
    folder = ds.folder(root)
    todo = []
    for f in ds.files:
        p = folder / f.path
        if p.is_file():
            if p.stat().st_size == f.bytes and sha256_of(p) == f.sha256:
                rep.present += 1
                continue
            raise DataError(f"{p} exists but is not the file the manifest pins (sha256 {f.sha256[:12]}...); move it "
                            f"aside and run `connectomes data fetch {ds.name}` again")
        todo.append(f)
    if not todo:
        return rep
    say(f"{ds.name}: fetching {len(todo)} of {len(ds.files)} files ({sum(f.bytes for f in todo) / 1e6:,.1f} MB) "
        f"from {mirror or ds.source}")
    if ds.build is not None and mirror is None:
        rep.bytes += _build(ds, folder, todo, root, say)
        rep.fetched += len(todo)
        return rep
    for f in todo:
        url = mirror_url(mirror, ds, f) if mirror else f.url
        rep.bytes += download(url, folder / f.path, sha256=f.sha256, size=f.bytes)
        rep.fetched += 1
    return rep


def _build(ds: DataSet, folder: Path, todo: list[DataFile], root: Path, say: Callable[[str], None]) -> int:
    """A set made from an archive: download (resumably, digest-checked) into root/.downloads, convert each
    file, check its sha256, write it atomically; the archive is removed once every file is in place."""
    archive_url = ds.build["archive"]
    archive = root / ".downloads" / Path(urllib.parse.urlsplit(archive_url).path).name
    got = 0
    if not archive.is_file():
        got = download(archive_url, archive, sha256=ds.build.get("sha256"), md5=ds.build.get("md5"))
    step = BUILDS[ds.build["step"]]
    folder.mkdir(parents=True, exist_ok=True)
    for f in todo:
        data = step(archive, f.path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != f.sha256 or len(data) != f.bytes:
            raise DataError(f"{ds.build['step']} made {ds.name}/{f.path} with sha256 {digest} ({len(data):,} bytes), "
                            f"not the pinned {f.sha256} ({f.bytes:,} bytes); nothing was written. The archive "
                            f"{archive} is kept for a look; report it")
        atomic_write(folder / f.path, lambda tmp, data=data: tmp.write_bytes(data))
        say(f"  made {ds.name}/{f.path} from {archive.name}")
    archive.unlink()  # 84 MB the toolkit never reads; the files made from it are checked and in place
    with contextlib.suppress(OSError):
        archive.parent.rmdir()  # only when empty: another set's .part may be resuming there
    return got


def fetch(sets: list[DataSet], root: Path, *, mirror: str | None = None,
          say: Callable[[str], None] = print) -> list[FetchReport]:
    """Fetch every set; a set that fails stops the command with its error after the others that came before."""
    return [fetch_set(ds, root, mirror=mirror, say=say) for ds in sets]
