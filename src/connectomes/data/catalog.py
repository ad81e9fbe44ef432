"""The data sets the toolkit reads, from the manifest shipped in the package (data/manifest.yaml): where
each comes from, its licence and citation, the sha256 of every file, what a data folder holds of it, and
the conversion steps for sets the toolkit reads in another form than their source publishes."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..core.errors import DataError, UserError
from ..core.readers import read_yaml

MANIFEST = "manifest.yaml"


@dataclass(frozen=True)
class DataFile:
    path: str  # inside the set's folder
    sha256: str
    bytes: int
    url: str | None  # None: made by the set's build step


@dataclass(frozen=True)
class DataSet:
    name: str  # also its folder inside the data folder (corpus/novels)
    what: str
    used_by: str
    licence: str
    citation: str
    homepage: str
    files: tuple[DataFile, ...]
    build: dict[str, Any] | None = None
    note: str = ""  # `unverified` or `verified` in the manifest
    source: str = field(default="")  # the URL prefix every file comes from, or the archive

    def folder(self, root: Path) -> Path:
        return Path(root) / self.name

    @property
    def size(self) -> int:
        return sum(f.bytes for f in self.files)


def manifest_path() -> Path:
    return Path(str(resources.files("connectomes.data") / MANIFEST))


def load_manifest(path: str | Path | None = None) -> dict[str, DataSet]:
    """The manifest (the packaged one unless ``path``) as {name: DataSet}; a malformed entry is one DataError."""
    p = Path(path) if path else manifest_path()
    raw = read_yaml(p, remedy="restore the manifest")
    if not isinstance(raw, dict):
        raise DataError(f"{p}: the data manifest must map set names to entries")
    return {name: _data_set(name, entry, p) for name, entry in raw.items()}


_SHA = re.compile(r"[0-9a-f]{64}")


def _data_set(name: str, e: Any, where: Path) -> DataSet:
    def need(d: Any, key: str) -> Any:
        if not isinstance(d, dict) or key not in d:
            raise DataError(f"{where}: set {name!r} lacks {key!r}")
        return d[key]

    base, build = e.get("base") if isinstance(e, dict) else None, e.get("build") if isinstance(e, dict) else None
    if (base is None) == (build is None):
        raise DataError(f"{where}: set {name!r} needs exactly one of base (a URL prefix) and build (a conversion)")
    if build is not None and need(build, "step") not in BUILDS:
        raise DataError(f"{where}: set {name!r} names build step {build['step']!r}; known: {', '.join(BUILDS)}")
    files = []
    for f in need(e, "files"):
        path, sha = str(need(f, "path")), str(need(f, "sha256"))
        if not _SHA.fullmatch(sha) or Path(path).is_absolute() or ".." in Path(path).parts:
            raise DataError(f"{where}: set {name!r} file {path!r}: a relative path and a 64-hex sha256 are required")
        src = str(f.get("from", path))
        url = None if build else (src if "://" in src else base + src)
        files.append(DataFile(path, sha, int(need(f, "bytes")), url))
    return DataSet(name=name, what=need(e, "what"), used_by=need(e, "used_by"), licence=need(e, "licence"),
                   citation=need(e, "citation"), homepage=need(e, "homepage"), files=tuple(files), build=build,
                   note=e.get("unverified") or e.get("verified") or "", source=base or build["archive"])


def select(manifest: dict[str, DataSet], names: list[str] | tuple[str, ...]) -> list[DataSet]:
    """The sets ``names`` pick (none: all); a folder name picks every set under it (corpus: corpus/*)."""
    if not names:
        return list(manifest.values())
    out: list[DataSet] = []
    for n in names:
        n = n.strip("/")
        hit = [s for s in manifest.values() if s.name == n or s.name.startswith(n + "/")]
        if not hit:
            raise UserError(f"no data set {n!r}; the manifest has {', '.join(manifest)} (`connectomes data list`)")
        out += [s for s in hit if s not in out]
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class SetState:
    present: int  # files there (of the right size; with verify, of the right sha256)
    missing: list[str]
    differing: list[str]  # there, but not the manifest's bytes

    def word(self, total: int) -> str:
        if self.differing:
            return f"differs ({len(self.differing)})"
        if not self.present:
            return "missing"
        return "present" if self.present == total else f"partial {self.present}/{total}"


def set_state(ds: DataSet, root: Path, verify: bool = False) -> SetState:
    """What ``root`` holds of ``ds``: by size (quick), or by sha256 with ``verify``."""
    st = SetState(0, [], [])
    for f in ds.files:
        p = ds.folder(root) / f.path
        if not p.is_file():
            st.missing.append(f.path)
        elif p.stat().st_size != f.bytes or (verify and sha256_of(p) != f.sha256):
            st.differing.append(f.path)
        else:
            st.present += 1
    return st


# --- conversion steps: archive -> the files the toolkit reads ------------------------------------------

def imdb_jsonl(archive: Path, label: str) -> bytes:
    """The Large Movie Review Dataset's training reviews of one label (pos/neg) as the corpus reads them: one
    JSON object a line, {"id": "train/pos/<n>_<rating>", "label", "rating", "text": the review unchanged},
    in the order of n. Read from the tar.gz member by member (nothing is extracted, so no member path can
    write outside the data folder)."""
    pat = re.compile(rf"(?:^|/)train/{label}/(\d+)_(\d+)\.txt$")
    rows = []
    with tarfile.open(archive, "r:*") as tar:
        for m in tar:
            hit = pat.search(m.name)
            if hit and m.isfile():
                n, rating = int(hit.group(1)), int(hit.group(2))
                text = tar.extractfile(m).read().decode("utf-8")
                rows.append((n, {"id": f"train/{label}/{n}_{rating}", "label": label, "rating": rating, "text": text}))
    if not rows:
        raise DataError(f"{archive} holds no train/{label}/*.txt reviews; it is not the aclImdb archive")
    rows.sort(key=lambda r: r[0])
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for _, r in rows)


def _imdb_build(archive: Path, path: str) -> bytes:
    label = re.fullmatch(r"imdb_train_(pos|neg)\.jsonl", path)
    if not label:
        raise DataError(f"imdb_jsonl makes imdb_train_pos.jsonl and imdb_train_neg.jsonl, not {path!r}")
    return imdb_jsonl(archive, label.group(1))


# step name -> (archive path, file path in the set) -> the file's bytes
BUILDS: dict[str, Callable[[Path, str], bytes]] = {"imdb_jsonl": _imdb_build}
