"""Text sources: a local folder, FineWeb (or any dataset with its schema), or synthetic text.

A source yields ``(DocRef, text)`` documents in an order fixed by a seed. A document is a ``.txt``
file, one row of a ``.jsonl`` / ``.jsonl.gz`` file (its ``text`` field), or one dataset row. Text is
normalised on the way in: UTF-8 BOM removed, CRLF/CR -> LF, ``<br />`` markup -> newline, NUL
removed (the byte tokenizer uses id 0 as the document separator), lone surrogates (which JSON can
carry but UTF-8 cannot) replaced by U+FFFD.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..core.errors import DataError
from ..core.integrity import sha256_file
from .synthetic import synthetic_document

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Bad characters (undecodable bytes, NULs) tolerated in a local file: a stray byte passes, a latin-1
# or binary file does not (a latin-1 text in a language with accents has one every few dozen characters).
MAX_BAD_FRACTION = 0.001
FINEWEB_SHUFFLE_BUFFER = 10_000  # documents held by the streamed shuffle (datasets' IterableDataset.shuffle)


def normalise(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = _BR.sub("\n", text).replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True)
class DocRef:
    """Where a document comes from: a file (relative to the source folder) or a dataset row id, and
    for jsonl the 1-based line (for a dataset, the position in the stream)."""

    source: str
    line: int = 0

    def label(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class Source:
    """Documents in an order that depends only on the seed.

    ``order`` says how the seed orders them (recorded in meta.json): a full shuffle of a local
    folder, a buffered shuffle of a streamed dataset, or fresh text generated from the seed.
    """

    description: dict  # what went in: kind, location, input file hashes
    order: str
    _documents: Callable[[int | None], Iterator[tuple[DocRef, str]]]

    def iter_docs(self, seed: int | None = None) -> Iterator[tuple[DocRef, str]]:
        """The documents for ``seed``; ``None`` gives the source's own order (sorted paths, stream order)."""
        return self._documents(seed)


# ---------------------------------------------------------------------------------------------
# local folders


class _NotUTF8(Exception):
    """A file that fails decoding (skippable), as opposed to malformed content (always an error)."""

    def __init__(self, error: DataError):
        super().__init__(str(error))
        self.error = error


def _open_bytes(path: Path):
    # bytes, decoded line by line: a decoding error then names its line, and its byte offset is in
    # that line (a text-mode reader reports offsets inside whatever chunk it decoded)
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _is_text_file(p: Path) -> bool:
    return p.is_file() and (p.suffix == ".txt" or p.name.endswith((".jsonl", ".jsonl.gz")))


def _read_jsonl(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank row; malformed rows are errors naming file and line."""
    rows = []
    try:
        with _open_bytes(path) as f:
            for i, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise _NotUTF8(_bad_file_error(path, f"line {i}: {e.reason} at byte {e.start} of the line")) from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{i} is not valid JSON ({e.msg}); fix or remove the line") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise DataError(f"{path}:{i} has no string 'text' field; every jsonl row needs one")
                rows.append((i, row["text"]))
    except (OSError, EOFError) as e:  # e.g. a truncated or mislabelled .gz
        raise DataError(f"cannot read {path} ({e}); check or replace the file") from None
    return rows


def text_problem(raw: bytes, max_bad_fraction: float = MAX_BAD_FRACTION) -> str | None:
    """Why ``raw`` is not usable UTF-8 text, or None. Bad characters are bytes that do not decode
    (each becomes U+FFFD) and NULs (binary data); up to ``max_bad_fraction`` of the characters are
    tolerated, so one stray byte in a novel does not stop a run."""
    text = raw.decode("utf-8", errors="replace")
    # a U+FFFD written in the file is its valid 3-byte encoding; only the surplus came from bad bytes
    undecodable = text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
    bad = undecodable + text.count("\x00")
    if bad <= max_bad_fraction * max(len(text), 1):
        return None
    where = ""
    if undecodable:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            where = f", the first at byte {e.start}"
    return (f"{bad:,} of its {len(text):,} characters ({bad / max(len(text), 1):.1%}) are undecodable bytes or NULs"
            f"{where}; at most {max_bad_fraction:.1%} is tolerated")


def _bad_file_error(path: Path, why: str) -> DataError:
    return DataError(
        f"{path} is not UTF-8 text ({why}); convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), remove it "
        "from the folder, or set data.skip_bad_files: true to leave such files out (they are counted in meta.json)"
    )


def _shown(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (a latin-1 name) shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _scan(folder: Path, files: list[Path], skip_bad_files: bool, max_bad_fraction: float):
    """(document refs, jsonl rows, skipped files {relative path: reason}); bad files raise unless skipped."""
    refs: list[DocRef] = []
    rows: dict[DocRef, str] = {}
    skipped: dict[str, str] = {}
    for p in files:
        rel = _shown(p.relative_to(folder).as_posix())
        try:
            if rel != p.relative_to(folder).as_posix():
                raise _NotUTF8(DataError(
                    f"{_shown(str(p))}: the file name is not UTF-8 text; rename it (e.g. `convmv -f latin1 -t utf-8`), "
                    "remove it, or set data.skip_bad_files: true to leave such files out"))
            if p.suffix == ".txt":
                why = text_problem(p.read_bytes(), max_bad_fraction)
                if why is not None:
                    raise _NotUTF8(_bad_file_error(p, why))
                refs.append(DocRef(rel))
                continue
            file_rows = _read_jsonl(p)
        except _NotUTF8 as e:
            if not skip_bad_files:
                raise e.error from None
            skipped[rel] = str(e.error)
            continue
        for line, text in file_rows:
            ref = DocRef(rel, line)
            refs.append(ref)
            rows[ref] = text
    return refs, rows, skipped


def local_source(folder: str | Path, *, skip_bad_files: bool = False,
                 max_bad_fraction: float = MAX_BAD_FRACTION) -> Source:
    """Every .txt / .jsonl / .jsonl.gz under ``folder``, in sorted-path order before shuffling.

    jsonl rows are held in memory (a gzip stream cannot be read at random; the shared corpus is
    ~35 MB of jsonl); .txt files are checked now and read again when their turn comes. A file that
    is not UTF-8 text is an error naming it, or with ``skip_bad_files`` is left out and listed in
    the description (meta.json's ``source.skipped_files``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"text folder {folder} does not exist; set data.path to a folder of .txt/.jsonl files "
            "or CONNECTOMES_DATA to the data folder (which holds corpus/)"
        )
    files = sorted(p for p in folder.rglob("*") if _is_text_file(p))
    if not files:
        raise DataError(f"text folder {folder} has no .txt, .jsonl or .jsonl.gz files")
    refs, rows, skipped = _scan(folder, files, skip_bad_files, max_bad_fraction)
    if not refs:
        raise DataError(f"every file in text folder {folder} is not UTF-8 text ({len(skipped)} skipped); convert them to UTF-8")

    def read(ref: DocRef) -> str:
        if ref.line:
            return normalise(rows[ref])
        # errors="replace": the few bad bytes text_problem tolerates become U+FFFD
        return normalise((folder / ref.source).read_text(encoding="utf-8", errors="replace"))

    def documents(seed: int | None) -> Iterator[tuple[DocRef, str]]:
        order = list(range(len(refs)))
        if seed is not None:
            random.Random(seed).shuffle(order)  # random.shuffle with an int seed is stable across Python 3 versions
        for i in order:
            yield refs[i], read(refs[i])

    desc = {
        "kind": "local",
        "path": str(folder.resolve()),
        "documents": len(refs),
        "files": {_shown(p.relative_to(folder).as_posix()): sha256_file(p) for p in files},
        "max_bad_fraction": max_bad_fraction,
        "skipped_files": {"count": len(skipped), "files": skipped},
    }
    return Source(desc, "full shuffle of the documents by the seed", documents)


# ---------------------------------------------------------------------------------------------
# FineWeb through Hugging Face datasets


def fineweb_source(name: str, subset: str = "", split: str = "train", *, data_files: list[str] | None = None,
                   shuffle_buffer: int = FINEWEB_SHUFFLE_BUFFER) -> Source:
    """FineWeb (or any dataset with its schema: ``text``, ``id``) streamed through ``datasets``.

    ``name`` is a hub id (network needed), or a builder such as ``"json"`` / ``"parquet"`` with
    local ``data_files`` (offline). A stream cannot be shuffled whole: the seed shuffles the order
    of the dataset's files, read one after another, and then the documents through a buffer of
    ``shuffle_buffer``. prepare
    stops reading once the token budgets are filled.
    """
    try:
        import datasets
    except ImportError:
        raise DataError("data.source=fineweb needs the `datasets` package: pip install 'connectomes[fineweb]'") from None

    def open_stream(seed: int | None):
        try:
            if data_files is not None:
                ds = datasets.load_dataset(name, data_files=data_files, split=split, streaming=True)
            else:
                ds = datasets.load_dataset(name, subset or None, split=split, streaming=True)
        except Exception as e:  # network, unknown dataset, unreadable files: all end the same way for the user
            raise DataError(f"cannot open dataset {name!r} ({type(e).__name__}: {e}); check the name, the network, or use data.source=local") from None
        # One file at a time: interleaving files runs reader threads, and datasets then sleeps 5 s
        # at every stream shutdown (its workaround for apache/arrow#45214).
        return ds if seed is None else ds.shuffle(seed=seed, buffer_size=shuffle_buffer, max_buffer_input_shards=1)

    def documents(seed: int | None) -> Iterator[tuple[DocRef, str]]:
        for n, row in enumerate(open_stream(seed), 1):
            if not isinstance(row.get("text"), str):
                raise DataError(f"dataset {name!r} row {n} has no string 'text' field (columns: {', '.join(sorted(row))})")
            yield DocRef(str(row.get("id", f"row{n}")), n), normalise(row["text"])

    desc = {"kind": "fineweb", "name": name, "subset": subset, "split": split}
    if data_files is not None:
        desc["files"] = {str(f): sha256_file(f) for f in data_files}
    return Source(desc, f"dataset files in an order shuffled by the seed, then documents through a {shuffle_buffer}-document shuffle buffer", documents)


def fineweb_files(folder: Path) -> tuple[str, list[str]]:
    """(datasets builder, files) for a local folder of FineWeb-schema parquet or jsonl files."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    parquet = [str(f) for f in files if f.suffix == ".parquet"]
    jsonl = [str(f) for f in files if f.name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))]
    if parquet and jsonl:
        raise DataError(f"{folder} mixes .parquet and .jsonl files; keep one format per dataset folder")
    if not (parquet or jsonl):
        raise DataError(f"{folder} has no .parquet or .jsonl files with FineWeb's schema (text, id, ...)")
    return ("parquet", parquet) if parquet else ("json", jsonl)


# ---------------------------------------------------------------------------------------------
# synthetic


def synthetic_source() -> Source:
    """An unbounded stream of generated documents: document i of seed s is always the same text, and
    documents are independent draws, so the seed alone decides what each split holds."""
    def documents(seed: int | None) -> Iterator[tuple[DocRef, str]]:
        s = seed or 0
        for i in itertools.count():
            yield DocRef(f"synthetic/seed{s}", i + 1), synthetic_document(s, i)

    return Source({"kind": "synthetic", "generator": "connectomes.data.synthetic"}, "documents generated from the seed", documents)
