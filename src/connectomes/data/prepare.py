"""Text -> token shards for the three splits (docs/method.md §2), deterministic for a seed.

Documents, in the order the seed gives them, are assigned whole to the splits in the order val,
small, large; each split takes documents until its budget is reached and its last document is cut
so that the split holds exactly the budget (the cut-off remainder is dropped, never given to another
split). So the splits are disjoint by document and exact in size. Every document is preceded by
the tokenizer's end-of-text id, as in llm.c.

The folder is built under a temporary name and renamed into place at the end, so a crash never
leaves a half-prepared folder that looks complete; an existing folder prepared with the same
settings is reused, one prepared with other settings is refused unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_dir
from ..core.config import to_dict
from ..core.errors import DataError
from ..core.inputs import resolve_data_path
from ..core.integrity import sha256_file, verify_file
from ..core.lock import run_lock
from ..core.progress import bar as progress_bar
from ..core.provenance import versions as _versions
from ..core.readers import read_json
from .config import MULTI_CORPUS_KEYS, DataConfig
from .shards import read_header, shard_version, write_shard
from .sources import DocRef, Source, fineweb_files, fineweb_source, local_source, synthetic_source
from .tokenizers import load_tokenizer, parse_tokenizer, train_bpe

SPLITS = ("val", "small", "large")  # the order in which splits take documents
FORMAT = "connectomes-data/1"
DOCUMENT_COLUMNS = ("source", "line", "token_start", "token_end")
# Characters a bpe-N tokenizer is trained on: enough for a stable vocabulary, bounded in time.
BPE_TRAIN_CHARS = 40_000_000
# Documents per task sent to a tokenising worker (amortises the pickling), and tasks in flight per
# worker: enough to keep every worker busy, few enough that look-ahead past the budgets stays small.
ENCODE_BATCH_DOCS = 64
ENCODE_TASKS_PER_WORKER = 4


def _settings(cfg: DataConfig) -> dict:
    """What determines the prepared data (where it is written, and the demo fallback switch, do not)."""
    d = to_dict(cfg)
    d.pop("dir", None)
    d.pop("synthetic_fallback", None)
    d.pop("workers", None)  # any worker count writes the same bytes
    for key in MULTI_CORPUS_KEYS:  # they choose among prepared folders (pipeline.corpora)
        d.pop(key, None)
    return d


def _budgets(cfg: DataConfig) -> dict[str, int]:
    budgets = {"val": cfg.val_tokens, "small": cfg.small_tokens, "large": cfg.large_tokens}
    for split, n in budgets.items():
        if n < 1:
            raise DataError(f"data.{split}_tokens is {n}; every split needs at least one token")
    if cfg.shard_tokens < 1:
        raise DataError(f"data.shard_tokens is {cfg.shard_tokens}; it must be at least 1")
    if cfg.workers < 1:
        raise DataError(f"data.workers is {cfg.workers}; it must be at least 1 (1 = tokenise in this process)")
    return budgets


def build_source(cfg: DataConfig, data_root: Path | None) -> Source:
    """The configured source. ``source: local`` with no ``path`` reads ``data_root/corpus``."""
    if cfg.source == "local":
        return local_source(resolve_data_path(cfg.path, data_root, "corpus", "data.path"),
                            skip_bad_files=cfg.skip_bad_files)
    if cfg.source == "fineweb":
        if cfg.path:  # local FineWeb-schema files (offline, and how the code path is tested)
            p = resolve_data_path(cfg.path, data_root, "", "data.path")
            if p.is_dir():
                builder, files = fineweb_files(p)
            elif p.is_file():
                builder, files = ("parquet" if p.suffix == ".parquet" else "json"), [str(p)]
            else:
                raise DataError(f"data.path {cfg.path!r} does not exist; give a folder or file of FineWeb-schema parquet/jsonl, or leave it empty for the hub")
            return fineweb_source(builder, "", "train", data_files=files)
        return fineweb_source(cfg.fineweb_name, cfg.fineweb_subset, cfg.fineweb_split)
    if cfg.source == "synthetic":
        return synthetic_source()
    raise DataError(f"data.source {cfg.source!r} is not one of local, fineweb, synthetic")


class _SplitWriter:
    """Streams a split's tokens into fixed-size shards, so paper-scale splits never sit in memory."""

    def __init__(self, folder: Path, split: str, budget: int, shard_tokens: int, vocab_size: int):
        self.folder, self.split, self.budget, self.shard_tokens = folder, split, budget, shard_tokens
        self.vocab_size = vocab_size
        self.dtype = np.uint16 if shard_version(vocab_size) == 1 else np.uint32
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0
        self.shards: list[str] = []
        self.documents: list[tuple[DocRef, int, int]] = []  # document, first token, end token

    @property
    def remaining(self) -> int:
        return self.budget - self.written - self.buffered

    def add(self, ref: DocRef, toks: np.ndarray) -> int:
        """Take as much of the document as the budget allows; returns the tokens taken."""
        take = toks[: self.remaining]
        start = self.written + self.buffered
        self.documents.append((ref, start, start + len(take)))
        self.buf.append(take.astype(self.dtype, copy=False))
        self.buffered += len(take)
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)
        return len(take)

    def _flush(self, n: int) -> None:
        data = np.concatenate(self.buf) if self.buf else np.zeros(0, self.dtype)
        name = f"{self.split}_{len(self.shards):06d}.bin"
        write_shard(self.folder / name, data[:n], vocab_size=self.vocab_size)
        self.shards.append(name)
        rest = data[n:]
        self.buf = [rest] if len(rest) else []
        self.buffered = len(rest)
        self.written += n

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)

    def write_documents(self) -> str:
        """The document list as TSV (one row per document; a FineWeb-scale split has millions)."""
        name = f"{self.split}_documents.tsv"
        with open(self.folder / name, "w", encoding="utf-8", newline="") as f:
            out = csv.writer(f, delimiter="\t", lineterminator="\n")
            out.writerow(DOCUMENT_COLUMNS)
            out.writerows((ref.source, ref.line, a, b) for ref, a, b in self.documents)
        return name


def source_text(meta: dict) -> str:
    """Where a prepared folder's text came from, in words, from its meta.json: the folder read, the dataset, or
    the package's synthetic corpus (the console and the report header both say it)."""
    src = meta.get("source") if isinstance(meta, dict) and isinstance(meta.get("source"), dict) else {}
    kind = src.get("kind")
    if kind == "local":
        return f"local folder {src.get('path')}"
    if kind == "fineweb":
        return (f"dataset {src.get('name')} ({src.get('subset')}, {src.get('split')})"
                + (f" from {len(src['files'])} local files" if src.get("files") else ""))
    if kind == "synthetic":
        return "the package's synthetic corpus"
    return "an unrecorded source"


def prepare_data(cfg: DataConfig, out_dir: Path, *, data_root: Path | None = None, progress: bool = True,
                 overwrite: bool = False, tokenizer_file: Path | None = None) -> dict:
    """Prepare ``out_dir`` from ``cfg`` and return its meta; reuse it when it was prepared with the
    same settings, refuse it when its settings differ (unless ``overwrite``). ``tokenizer_file``: a bpe-N
    tokenizer trained on another corpus's folder, used instead of training one here (data.foreign_bpe); its
    digest is one of the settings."""
    out_dir = Path(out_dir)
    settings = _settings(cfg)
    if tokenizer_file is not None:
        if not Path(tokenizer_file).is_file():
            raise DataError(f"{tokenizer_file} is missing: the run's own corpus is prepared first, and its bpe "
                            "tokenizer encodes the other corpora; re-run the study")
        settings["tokenizer_file_sha256"] = sha256_file(tokenizer_file)
    lock = dict(command="prepare", name=f".{out_dir.name}.lock")
    # reusing a prepared folder only reads it: a reader's hold, which works on read-only storage
    with run_lock(out_dir.parent, shared=True, **lock):
        existing = _reusable_meta(out_dir, settings, overwrite)
        if existing is not None:
            return existing
    # a shared data.dir may be prepared by two runs at once: one writer, locked from the parent
    # because the folder itself is swapped in whole; the folder is judged again under the lock, so a run
    # that takes the lock just after another finished reuses its data instead of preparing them again
    with run_lock(out_dir.parent, **lock):
        existing = _reusable_meta(out_dir, settings, overwrite)
        if existing is not None:
            return existing
        budgets = _budgets(cfg)
        source = build_source(cfg, data_root)
        return atomic_dir(out_dir, lambda tmp: _prepare_into(cfg, budgets, source, tmp, settings, progress, tokenizer_file))


def _reusable_meta(out_dir: Path, settings: dict, overwrite: bool) -> dict | None:
    """The meta of a folder prepared with ``settings`` (reuse it); None when there is nothing to
    reuse; a DataError when the folder holds something else, unless ``overwrite``."""
    existing = _existing_meta(out_dir)
    if existing is not None and existing.get("settings") == settings:
        return existing
    if existing is not None and not overwrite:
        old = existing.get("settings", {})
        diff = sorted(k for k in set(settings) | set(old) if old.get(k) != settings.get(k))
        raise DataError(f"{out_dir} was prepared with other data settings (differs in {', '.join(diff)}); "
                        "delete it, choose another run name or data.dir, or pass overwrite")
    if existing is None and out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"{out_dir} exists but is not a prepared data folder (no meta.json); delete it or set data.dir")
    return None


def _existing_meta(out_dir: Path) -> dict | None:
    remedy = f"delete {out_dir} and run `connectomes prepare` again (the data is rebuilt from the same settings)"
    meta = read_json(out_dir / "meta.json", missing=None, remedy=remedy)
    if meta is not None:
        problem = _meta_problem(meta)
        if problem:
            raise DataError(f"{out_dir / 'meta.json'} {problem}; {remedy}")
    return meta


def _plain_name(x) -> bool:
    """A file name inside the data folder: meta.json never sends a reader elsewhere."""
    return isinstance(x, str) and x not in ("", ".", "..") and "/" not in x and "\\" not in x and "\0" not in x


def _meta_problem(meta: dict) -> str | None:
    """What is missing or mistyped in a meta.json, as a phrase (None when every field readers use is sound)."""
    if not isinstance(meta.get("settings"), dict) or not isinstance(meta.get("splits"), dict):
        return "lacks its settings or splits"
    if not isinstance(meta.get("tokenizer"), str):
        return "names no tokenizer"
    for split, info in meta["splits"].items():
        ok = (isinstance(info, dict) and isinstance(info.get("tokens"), int) and not isinstance(info["tokens"], bool)
              and isinstance(info.get("shards"), list) and all(_plain_name(n) for n in info["shards"])
              and isinstance(info.get("sha256", {}), dict) and all(isinstance(v, str) for v in info.get("sha256", {}).values())
              and _plain_name(info.get("document_file", "x")) and isinstance(info.get("document_file_sha256", ""), str))
        if not ok:
            return f"has a malformed entry for split {split!r} (tokens, shard file names, digests)"
    return None


def _prepare_into(cfg: DataConfig, budgets: dict[str, int], source: Source, folder: Path, settings: dict,
                  progress: bool, tokenizer_file: Path | None = None) -> dict:
    tok, training = _tokenizer(cfg, source, folder, tokenizer_file)
    writers = {s: _SplitWriter(folder, s, budgets[s], cfg.shard_tokens, tok.vocab_size) for s in SPLITS}
    bar = progress_bar(sum(budgets.values()), f"prepare ({tok.name})", "tok", unit_scale=True) if progress else None
    pending = list(SPLITS)
    n_docs = empty = 0
    with contextlib.closing(_encoded_docs(source.iter_docs(cfg.seed), tok, cfg.workers)) as docs:
        for ref, toks in docs:
            while pending and writers[pending[0]].remaining == 0:
                pending.pop(0)
            if not pending:
                break
            n_docs += 1
            if toks is None:
                empty += 1  # an empty document would only add a separator
                continue
            taken = writers[pending[0]].add(ref, toks)
            if bar is not None:
                bar.update(taken)
    if bar is not None:
        bar.close()
    got = {s: budgets[s] - w.remaining for s, w in writers.items()}
    if got != budgets:
        raise DataError(
            f"the corpus ran out after {n_docs:,} documents with {sum(got.values()):,} tokens ({got}) but the budgets "
            f"need {sum(budgets.values()):,} ({budgets}); lower data.large_tokens/small_tokens/val_tokens or add text"
        )
    splits = {}
    for s, w in writers.items():
        w.close()
        doc_file = w.write_documents()
        splits[s] = {"tokens": budgets[s], "documents": len(w.documents), "shards": w.shards,
                     "sha256": {n: sha256_file(folder / n) for n in w.shards},
                     "document_file": doc_file, "document_file_sha256": sha256_file(folder / doc_file)}
    meta = {
        "format": FORMAT,
        "settings": settings,
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "seed": cfg.seed,
        "source": source.description,
        "order": source.order,
        "documents_read": n_docs,
        "empty_documents_skipped": empty,
        "splits": splits,
        "versions": _versions(),
    }
    if training is not None:
        meta["tokenizer_training"] = training
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _encode_batch(texts: list[str], tok) -> list[np.ndarray | None]:
    """End-of-text id + tokens of each document; None for an empty one (it is skipped, not written)."""
    return [np.asarray([tok.eot_id] + tok.encode(t), dtype=np.int64) if t else None for t in texts]


def _batches(docs, n: int):
    batch = []
    for ref, text in docs:
        batch.append((ref, text))
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _encoded_docs(docs, tok, workers: int):
    """(ref, tokens or None) for every document, in the source's order whatever ``workers`` is.

    With workers > 1 a thread pool tokenises batches of documents: the gpt2 (tiktoken) and bpe-N
    (tokenizers) encoders run in Rust without the GIL, and threads share the one tokenizer, need no
    main guard and cannot inherit a reader thread's lock the way a forked process can (forking
    after `datasets` started its reader threads deadlocked). Results are taken back in submission
    order, so the output is the single-worker output byte for byte. Look-ahead is bounded (a
    FineWeb stream must not be read to its end): at most workers x ENCODE_TASKS_PER_WORKER batches
    are in flight. Closing the generator stops the pool.
    """
    if workers == 1:
        for ref, text in docs:
            yield ref, _encode_batch([text], tok)[0]
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="tokenise") as pool:
        in_flight = []
        try:
            for batch in _batches(docs, ENCODE_BATCH_DOCS):
                in_flight.append(([ref for ref, _ in batch], pool.submit(_encode_batch, [t for _, t in batch], tok)))
                if len(in_flight) < workers * ENCODE_TASKS_PER_WORKER:
                    continue
                refs, job = in_flight.pop(0)
                yield from zip(refs, job.result())
            for refs, job in in_flight:
                yield from zip(refs, job.result())
        finally:
            for _, job in in_flight:
                job.cancel()


def _tokenizer(cfg: DataConfig, source: Source, folder: Path, tokenizer_file: Path | None = None):
    """The tokenizer, and for bpe-N a record of the text it was trained on (or of the file it was copied from)."""
    if parse_tokenizer(cfg.tokenizer).kind != "bpe":
        return load_tokenizer(cfg.tokenizer, gpt2_bpe_file=cfg.gpt2_bpe_file or None), None
    if tokenizer_file is not None:
        shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
        return load_tokenizer(cfg.tokenizer, data_dir=folder), {
            "copied_from": str(Path(tokenizer_file).resolve()), "file": "tokenizer.json",
            "sha256": sha256_file(folder / "tokenizer.json")}
    seen = {"documents": 0, "chars": 0}

    def texts():
        # The first documents of the seed's order, val's included: a tokenizer fitted to the
        # corpus, as GPT-2's was to WebText; the model still never trains on val tokens.
        for _, text in source.iter_docs(cfg.seed):
            yield text
            seen["documents"] += 1
            seen["chars"] += len(text)
            if seen["chars"] >= BPE_TRAIN_CHARS:
                return

    tok = train_bpe(cfg.tokenizer, texts(), folder)
    return tok, {**seen, "file": "tokenizer.json", "sha256": sha256_file(folder / "tokenizer.json")}


@dataclass
class PreparedData:
    """An opened prepared-data folder. Each split's shards are checked against the sha256 that
    meta.json recorded when they were written, on the split's first use in this object: a flipped
    bit or a hand-replaced shard would otherwise change a run's tokens without a word."""

    dir: Path
    meta: dict
    verify: bool = True
    _verified: set = field(default_factory=set, repr=False)

    def tokenizer(self):
        return load_tokenizer(self.meta["tokenizer"], data_dir=self.dir,
                              gpt2_bpe_file=self.meta["settings"].get("gpt2_bpe_file") or None)

    def _split(self, split: str) -> dict:
        if split not in self.meta["splits"]:
            raise DataError(f"{self.dir} has no split {split!r} (it has {', '.join(self.meta['splits'])})")
        return self.meta["splits"][split]

    def _remedy(self) -> str:
        return f"delete {self.dir} and run `connectomes prepare` again (the data is rebuilt from the same settings)"

    def split_paths(self, split: str) -> list[Path]:
        """The split's shard files, each checked (missing, truncated, foreign or changed files are named here)."""
        info = self._split(split)
        paths = [self.dir / n for n in info["shards"]]
        for p in paths:
            read_header(p)
        if self.verify and split not in self._verified:
            digests = info.get("sha256", {})
            for p in paths:
                if p.name not in digests:
                    raise DataError(f"{self.dir / 'meta.json'} records no sha256 for {p.name}, so it cannot be checked; {self._remedy()}")
                verify_file(p, digests[p.name], remedy=self._remedy(), error=DataError)
            self._verified.add(split)
        return paths

    def split_tokens(self, split: str) -> int:
        return self._split(split)["tokens"]

    def documents(self, split: str) -> list[tuple[str, int, int, int]]:
        """(source, line, first token, end token) of every document in the split, in order."""
        info = self._split(split)
        path = self.dir / info["document_file"]
        if self.verify and path.exists() and "document_file_sha256" in info:
            verify_file(path, info["document_file_sha256"], remedy=self._remedy(), error=DataError)
        try:
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f, delimiter="\t"))
        except FileNotFoundError:
            raise DataError(f"{path} is missing; re-run `connectomes prepare`") from None
        if not rows or tuple(rows[0]) != DOCUMENT_COLUMNS:
            raise DataError(f"{path} does not start with the header {' '.join(DOCUMENT_COLUMNS)}; re-run `connectomes prepare`")
        return [(src, int(line), int(a), int(b)) for src, line, a, b in rows[1:]]


def open_prepared(data_dir: str | Path, *, verify: bool = True) -> PreparedData:
    """The prepared folder; with ``verify`` (the default) shards are checked against meta.json's
    sha256 on each split's first use (``verify=False`` is for tools that only read meta.json)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"prepared data folder {d} does not exist; run `connectomes prepare` first")
    if not (d / "meta.json").exists():
        raise DataError(f"{d} has no meta.json, so it is not a prepared data folder; run `connectomes prepare`")
    meta = _existing_meta(d)
    if meta.get("format") != FORMAT:
        raise DataError(f"{d / 'meta.json'} has format {meta.get('format')!r}, expected {FORMAT!r}; re-run `connectomes prepare`")
    return PreparedData(d, meta, verify=verify)
