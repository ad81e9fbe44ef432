"""Token shards in the llm.c format (method.md §2), read by memory map.

Header: 256 little-endian int32; [0] = magic 20240520, [1] = version, [2] = token count.
Version 1 stores uint16 tokens (GPT-2's 50257 ids fit); version 2 stores uint32 tokens for
vocabularies above 65535 (our extension, with its own version number so llm.c readers refuse it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSIONS = {1: np.uint16, 2: np.uint32}


def write_shard(path: str | Path, tokens: np.ndarray) -> Path:
    """Write ``tokens`` atomically (temp file + rename); uint16 when every id fits, else uint32."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.size and tokens.min() < 0:
        raise ValueError("token ids must be non-negative")
    version = 1 if (tokens.size == 0 or tokens.max() < 2**16) else 2
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, version, tokens.size
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.dtype(VERSIONS[version]).newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path)
    return path


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
        raise DataError(f"shard {path} has unsupported version {version} (known: {sorted(VERSIONS)})")
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
    if count == 0:
        return np.zeros(0, dtype=VERSIONS[version])
    return np.memmap(path, dtype=np.dtype(VERSIONS[version]).newbyteorder("<"), mode="r", offset=HEADER_BYTES, shape=(count,))


def check_vocab(path: str | Path, vocab_size: int) -> None:
    """Refuse a shard holding an id the model cannot embed (tokenizer/model mismatch)."""
    toks = read_shard(path)
    if toks.size and int(toks.max()) >= vocab_size:
        bad = int(toks.max())
        raise DataError(
            f"shard {path} holds token id {bad}, outside the model's vocabulary of {vocab_size}; "
            "the tokenizer that made the data does not match the model (check data.tokenizer and model.vocab_size)"
        )


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
