"""Token shards in the llm.c format (docs/method.md §2), read by memory map.

Header: 256 little-endian int32; [0] = magic 20240520, [1] = version, [2] = token count.
Version 1 stores uint16 tokens (GPT-2's 50257 ids fit); version 2 stores uint32 tokens for
vocabularies of more than 65536 ids (our extension, with its own version number so llm.c readers
refuse it rather than misread it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write
from ..core.errors import DataError

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSIONS = {1: np.uint16, 2: np.uint32}


def shard_version(vocab_size: int) -> int:
    """1 (uint16) when every id of the vocabulary fits 16 bits, else 2 (uint32)."""
    return 1 if vocab_size <= 2**16 else 2


def write_shard(path: str | Path, tokens: np.ndarray, *, vocab_size: int | None = None) -> Path:
    """Write ``tokens`` atomically (temp file + rename, so a reader never sees half a shard).

    The version follows ``vocab_size`` when given (every shard of a split then has one dtype), else
    the largest id present.
    """
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {tokens.dtype}")
    lo, hi = (int(tokens.min()), int(tokens.max())) if tokens.size else (0, 0)
    version = shard_version(vocab_size if vocab_size is not None else hi + 1)
    if lo < 0 or hi >= 2 ** (16 if version == 1 else 32):
        raise ValueError(f"token ids must lie in [0, {2 ** (16 if version == 1 else 32)}) for a version-{version} shard, got [{lo}, {hi}]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, version, tokens.size

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(tokens.astype(np.dtype(VERSIONS[version]).newbyteorder("<"), copy=False).tobytes())

    return atomic_write(path, write)


def read_header(path: str | Path) -> tuple[int, int]:
    """(version, token count) after checking magic, version and the file size."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise DataError(f"shard {path} does not exist; re-run `connectomes prepare`") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(f"shard {path} is truncated ({size} bytes, shorter than the {HEADER_BYTES}-byte header); re-run `connectomes prepare`")
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise DataError(f"{path} is not an llm.c token shard (magic {header[0]}, expected {MAGIC})")
    version, count = int(header[1]), int(header[2])
    if version not in VERSIONS:
        raise DataError(f"shard {path} has unsupported version {version} (known: {sorted(VERSIONS)}); re-run `connectomes prepare`")
    if count < 0:
        raise DataError(f"shard {path} has a negative token count ({count}) in its header; re-run `connectomes prepare`")
    expected = HEADER_BYTES + count * np.dtype(VERSIONS[version]).itemsize
    if size != expected:
        raise DataError(
            f"shard {path} is {'truncated' if size < expected else 'longer than its header says'}: "
            f"{size} bytes, expected {expected} for {count:,} tokens; re-run `connectomes prepare`"
        )
    return version, count


def read_shard(path: str | Path) -> np.ndarray:
    """The shard's tokens as a read-only memory map (validated header and size)."""
    version, count = read_header(path)
    if count == 0:  # np.memmap cannot map zero bytes
        empty = np.zeros(0, dtype=VERSIONS[version])
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=np.dtype(VERSIONS[version]).newbyteorder("<"), mode="r", offset=HEADER_BYTES, shape=(count,))


def check_vocab(path: str | Path, vocab_size: int) -> None:
    """Refuse a shard holding an id the model cannot embed (tokenizer/model mismatch)."""
    toks = read_shard(path)
    bad = int(toks.max()) if toks.size else -1
    if bad >= vocab_size:
        raise DataError(
            f"shard {path} holds token id {bad}, outside the model's vocabulary of {vocab_size}; "
            "the tokenizer that made the data does not match the model (check data.tokenizer and model.vocab_size)"
        )
