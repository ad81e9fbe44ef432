"""Text sources, each an ordered list of documents: a local folder, FineWeb, or synthetic text.

A document is a ``.txt`` file or one row of a ``.jsonl`` / ``.jsonl.gz`` file (its ``text`` field).
Text is normalised on the way in: UTF-8 BOM removed, CRLF/CR -> LF, ``<br />`` markup -> newline,
NUL removed (the byte tokenizer uses id 0 as the document separator).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import DataError

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def normalise(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return _BR.sub("\n", text).replace("\x00", "")


@dataclass(frozen=True)
class DocRef:
    """Where a document comes from: a file and, for jsonl, the 1-based line."""

    source: str
    line: int = 0

    def label(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class Source:
    """An ordered, re-iterable set of documents. ``shuffle`` says whether prepare may reorder them
    (local folders: yes, by the data seed; streamed datasets are taken in their own order)."""

    description: dict  # what went in: kind, location, input file hashes
    docs: Callable[[], Iterator[tuple[DocRef, str]]]
    refs: list[DocRef] | None = None
    read: Callable[[DocRef], str] | None = None

    @property
    def shuffle(self) -> bool:
        return self.refs is not None

    def iter_docs(self, seed: int | None = None) -> Iterator[tuple[DocRef, str]]:
        if self.refs is None or seed is None:
            yield from self.docs()
            return
        import random

        order = list(range(len(self.refs)))
        random.Random(seed).shuffle(order)
        for i in order:
            yield self.refs[i], self.read(self.refs[i])


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 22):
            h.update(b)
    return h.hexdigest()


def local_source(folder: Path) -> Source:
    """Every .txt / .jsonl / .jsonl.gz under ``folder`` (sorted paths, so the order is reproducible)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"text folder {folder} does not exist; set data.path (or CONNECTOMES_DATA) to a folder of .txt/.jsonl files")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix == ".txt" or p.name.endswith((".jsonl", ".jsonl.gz"))))
    if not files:
        raise DataError(f"text folder {folder} has no .txt, .jsonl or .jsonl.gz files")
    refs: list[DocRef] = []
    jsonl_cache: dict[str, list[str]] = {}
    for p in files:
        if p.suffix == ".txt":
            refs.append(DocRef(str(p)))
            continue
        texts = []
        with _open_text(p) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{p}:{i} is not valid JSON ({e.msg}); fix or remove the line") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise DataError(f"{p}:{i} has no string 'text' field")
                texts.append(row["text"])
                refs.append(DocRef(str(p), i))
        jsonl_cache[str(p)] = texts
    # Row texts are kept in memory once (the shared corpus is ~35 MB of jsonl); .txt files are read on demand.
    row_index = {}
    for p, texts in jsonl_cache.items():
        lines = [r.line for r in refs if r.source == p]
        row_index.update({(p, ln): t for ln, t in zip(lines, texts)})

    def read(ref: DocRef) -> str:
        if ref.line:
            return normalise(row_index[(ref.source, ref.line)])
        with open(ref.source, encoding="utf-8", errors="replace") as f:
            return normalise(f.read())

    desc = {"kind": "local", "path": str(folder.resolve()), "files": {str(p.relative_to(folder)): _sha256(p) for p in files}}
    return Source(desc, lambda: ((r, read(r)) for r in refs), refs, read)


def fineweb_source(name: str, subset: str, split: str, data_files=None) -> Source:
    """FineWeb (or any dataset with its schema: ``text``, ``id``) streamed through Hugging Face ``datasets``.

    ``name`` may be a hub id (needs network) or a loader such as "json"/"parquet" with ``data_files``
    (local files, offline). Documents come in the dataset's own order; prepare stops reading when
    the token budgets are filled.
    """
    try:
        import datasets
    except ImportError:
        raise DataError("data.source=fineweb needs the `datasets` package: pip install 'connectomes[fineweb]'") from None

    def open_stream():
        try:
            if data_files is not None:
                return datasets.load_dataset(name, data_files=data_files, split=split, streaming=True)
            return datasets.load_dataset(name, subset or None, split=split, streaming=True)
        except Exception as e:
            raise DataError(f"cannot open dataset {name!r} ({type(e).__name__}: {e}); check the name or use data.source=local") from None

    def docs():
        for n, row in enumerate(open_stream()):
            if "text" not in row:
                raise DataError(f"dataset {name!r} rows have no 'text' field (columns: {sorted(row)})")
            yield DocRef(f"{name}#{row.get('id', n)}", n + 1), normalise(row["text"])

    return Source({"kind": "fineweb", "name": name, "subset": subset, "split": split,
                   "data_files": [str(f) for f in data_files] if isinstance(data_files, list) else data_files}, docs)


def synthetic_source(n_docs: int, seed: int) -> Source:
    from .synthetic import synthetic_document

    refs = [DocRef(f"synthetic#{i}", i + 1) for i in range(n_docs)]
    read = lambda r: synthetic_document(seed, r.line - 1)  # noqa: E731
    return Source({"kind": "synthetic", "documents": n_docs, "seed": seed}, lambda: ((r, read(r)) for r in refs), refs, read)
