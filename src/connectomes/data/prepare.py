"""Text -> token shards for the three splits (method.md §2), deterministic for a seed.

Documents (shuffled by ``data.seed`` when the source allows it) are assigned whole to the splits in
the order val, small, large; each split takes documents until its budget is reached and its last
document is cut so that the split holds exactly the budget (the cut-off remainder is dropped, never
given to another split). So the splits are disjoint by document and exact in size. Every document is
preceded by the tokenizer's end-of-text id, as in llm.c.

The folder is built under a temporary name and renamed into place at the end, so a crash never
leaves a half-prepared folder that looks complete; an existing folder prepared with the same
settings is reused, one prepared with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..config import DataConfig, to_dict
from ..errors import DataError
from .shards import read_header, sha256_file, write_shard
from .sources import Source, fineweb_source, local_source, synthetic_source
from .tokenizers import load_tokenizer, train_bpe

SPLITS = ("val", "small", "large")
FORMAT = "connectomes-data/1"
# Chars of text a bpe-N tokenizer is trained on (enough for a stable vocabulary, bounded in time).
BPE_TRAIN_CHARS = 40_000_000


def _settings(cfg: DataConfig) -> dict:
    """What determines the prepared data (the output folder itself does not)."""
    d = to_dict(cfg)
    d.pop("dir", None)
    d.pop("synthetic_fallback", None)
    return d


def build_source(cfg: DataConfig, data_root: Path | None) -> Source:
    if cfg.source == "local":
        if cfg.path:
            folder = Path(cfg.path)
            if not folder.is_absolute() and not folder.exists() and data_root is not None:
                folder = Path(data_root) / cfg.path  # e.g. "corpus/novels" inside the data folder
        elif data_root is not None:
            folder = Path(data_root) / "corpus"
        else:
            raise DataError("no text folder: set data.path to a folder of .txt/.jsonl files or CONNECTOMES_DATA to the data folder")
        return local_source(folder)
    if cfg.source == "fineweb":
        name = cfg.path or cfg.fineweb_name
        p = Path(name)
        if p.is_dir():  # a local folder of FineWeb-schema parquet/jsonl files
            files = sorted(str(f) for f in p.rglob("*") if f.suffix in (".parquet", ".jsonl", ".json") or f.name.endswith(".jsonl.gz"))
            if not files:
                raise DataError(f"{p} has no .parquet/.jsonl files with FineWeb's schema")
            loader = "parquet" if files[0].endswith(".parquet") else "json"
            return fineweb_source(loader, "", "train", data_files=files)
        return fineweb_source(name, cfg.fineweb_subset, cfg.fineweb_split)
    if cfg.source == "synthetic":
        # ~1.5k characters per document; enough documents for the budgets with any tokenizer.
        need = cfg.large_tokens + cfg.small_tokens + cfg.val_tokens
        return synthetic_source(n_docs=max(100, need // 300 + 100), seed=cfg.seed)
    raise DataError(f"unknown data.source {cfg.source!r}")


class _SplitWriter:
    """Streams a split's tokens into fixed-size shards, so paper-scale splits never sit in memory."""

    def __init__(self, folder: Path, split: str, budget: int, shard_tokens: int, dtype):
        self.folder, self.split, self.budget, self.shard_tokens = folder, split, budget, shard_tokens
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0
        self.shards: list[str] = []
        self.documents: list[tuple[str, int, int, int]] = []  # source, line, first token, end token
        self.dtype = dtype

    @property
    def remaining(self) -> int:
        return self.budget - self.written - self.buffered

    def add(self, ref, toks: np.ndarray) -> None:
        take = toks[: self.remaining]
        start = self.written + self.buffered
        self.documents.append((ref.source, ref.line, start, start + len(take)))
        self.buf.append(take.astype(self.dtype, copy=False))
        self.buffered += len(take)
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        data = np.concatenate(self.buf) if self.buf else np.zeros(0, self.dtype)
        name = f"{self.split}_{len(self.shards):06d}.bin"
        write_shard(self.folder / name, data[:n])
        self.shards.append(name)
        rest = data[n:]
        self.buf = [rest] if len(rest) else []
        self.buffered = len(rest)
        self.written += n

    def close(self) -> None:
        if self.buffered or not self.shards:
            self._flush(self.buffered)


def prepare_data(cfg: DataConfig, out_dir: Path, *, data_root: Path | None = None, progress: bool = True,
                 overwrite: bool = False) -> dict:
    """Prepare (or reuse) ``out_dir``; returns its meta."""
    out_dir = Path(out_dir)
    settings = _settings(cfg)
    meta_path = out_dir / "meta.json"
    if out_dir.exists():
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("settings") == settings:
                return meta
            if not overwrite:
                diff = sorted(k for k in settings if meta.get("settings", {}).get(k) != settings[k])
                raise DataError(f"{out_dir} was prepared with other data settings (differs in {', '.join(diff)}); "
                                "delete it, choose another run name, or set data.dir")
        elif any(out_dir.iterdir()) and not overwrite:
            raise DataError(f"{out_dir} exists but is not a prepared data folder (no meta.json); delete it or set data.dir")
    source = build_source(cfg, data_root)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        meta = _prepare_into(cfg, source, tmp, settings, progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return meta


def _prepare_into(cfg: DataConfig, source: Source, folder: Path, settings: dict, progress: bool) -> dict:
    import tiktoken  # noqa: F401  (fail early and clearly if the environment is broken)

    seed = cfg.seed if source.shuffle else None
    if cfg.tokenizer.startswith("bpe-"):
        texts = (t for _, t in source.iter_docs(seed))

        def capped():
            n = 0
            for t in texts:
                yield t
                n += len(t)
                if n >= BPE_TRAIN_CHARS:
                    return

        tok = train_bpe(cfg.tokenizer, capped(), folder)
    else:
        tok = load_tokenizer(cfg.tokenizer, gpt2_bpe_file=cfg.gpt2_bpe_file or None)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    budgets = {"val": cfg.val_tokens, "small": cfg.small_tokens, "large": cfg.large_tokens}
    writers = {s: _SplitWriter(folder, s, budgets[s], cfg.shard_tokens, dtype) for s in SPLITS}
    total = sum(budgets.values())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="tok", unit_scale=True, desc=f"prepare ({tok.name})", file=sys.stderr, leave=False)
    order = iter(SPLITS)
    split = next(order)
    n_docs = 0
    for ref, text in source.iter_docs(seed):
        while split is not None and writers[split].remaining == 0:
            split = next(order, None)
        if split is None:
            break
        toks = np.asarray([tok.eot_id] + tok.encode(text), dtype=np.int64)
        before = writers[split].remaining
        writers[split].add(ref, toks)
        n_docs += 1
        if bar is not None:
            bar.update(before - writers[split].remaining)
    if bar is not None:
        bar.close()
    short = {s: w.remaining for s, w in writers.items() if w.remaining > 0}
    if short:
        got = {s: budgets[s] - w.remaining for s, w in writers.items()}
        raise DataError(
            f"the corpus ran out after {n_docs} documents: got {got} tokens but the budgets are {budgets}; "
            "lower data.large_tokens/small_tokens/val_tokens or add text"
        )
    splits = {}
    for s, w in writers.items():
        w.close()
        doc_file = f"{s}_documents.tsv"
        with open(folder / doc_file, "w") as f:
            f.write("source\tline\ttoken_start\ttoken_end\n")
            for src, line, a, b in w.documents:
                f.write(f"{src}\t{line}\t{a}\t{b}\n")
        splits[s] = {"tokens": budgets[s], "documents": len(w.documents), "document_file": doc_file,
                     "shards": w.shards, "sha256": {n: sha256_file(folder / n) for n in w.shards}}
    meta = {
        "format": FORMAT,
        "settings": settings,
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "source": source.description,
        "shuffled": source.shuffle,
        "splits": splits,
        "versions": _versions(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _versions() -> dict:
    import numpy
    import tiktoken
    import tokenizers

    from .. import __version__

    return {"connectomes": __version__, "numpy": numpy.__version__, "tiktoken": tiktoken.__version__,
            "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]}


@dataclass
class PreparedData:
    dir: Path
    meta: dict

    def tokenizer(self):
        return load_tokenizer(self.meta["tokenizer"], data_dir=self.dir,
                              gpt2_bpe_file=self.meta["settings"].get("gpt2_bpe_file") or None)

    def split_paths(self, split: str) -> list[Path]:
        if split not in self.meta["splits"]:
            raise DataError(f"{self.dir} has no split {split!r} (has {', '.join(self.meta['splits'])})")
        paths = [self.dir / n for n in self.meta["splits"][split]["shards"]]
        for p in paths:
            read_header(p)  # missing, truncated or foreign files are named here
        return paths

    def split_tokens(self, split: str) -> int:
        return self.meta["splits"][split]["tokens"]

    def documents(self, split: str) -> list[tuple[str, int, int, int]]:
        rows = (self.dir / self.meta["splits"][split]["document_file"]).read_text().splitlines()[1:]
        out = []
        for r in rows:
            src, line, a, b = r.split("\t")
            out.append((src, int(line), int(a), int(b)))
        return out


def open_prepared(data_dir: str | Path) -> PreparedData:
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"prepared data folder {d} does not exist; run `connectomes prepare` first")
    meta_path = d / "meta.json"
    if not meta_path.exists():
        raise DataError(f"{d} has no meta.json; it is not a prepared data folder — run `connectomes prepare`")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path} is corrupt ({e}); delete {d} and run `connectomes prepare` again") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}; re-run `connectomes prepare`")
    return PreparedData(d, meta)
