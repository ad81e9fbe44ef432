"""The resumable batch stream (method.md §2): contiguous windows of block_size+1 tokens.

A step consumes ``global_batch`` consecutive windows from the current position; rank r of ``world``
takes windows r*b .. (r+1)*b-1 (b = global_batch / world), so the set of sequences in a step is the
same whatever the process count. When a shard cannot supply a whole step the stream moves to the
next shard, wrapping to the first (a new epoch) after the last. The position is part of every
checkpoint, so a resumed run sees exactly the tokens it would have seen.

``max_tokens=n`` restricts the stream to the split's first n tokens (positions [0, n) read across
shards in order; :func:`nested_prefixes`), so developmental data sweeps use nested subsets: every
smaller subset is a prefix of every larger one. The stream then cycles over that prefix alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import DataError
from .shards import check_vocab, read_shard


STATE_KEYS = ("shard", "pos", "epoch", "steps")


class TokenStream:
    def __init__(self, paths: list[Path], block_size: int, global_batch: int, rank: int = 0, world: int = 1,
                 vocab_size: int | None = None, max_tokens: int | None = None):
        if not paths:
            raise DataError("no shards given to the data stream; run `connectomes prepare`")
        if block_size < 1 or global_batch < 1:
            raise DataError(f"block size ({block_size}) and batch size ({global_batch}) must both be at least 1")
        if global_batch % world:
            raise DataError(f"global batch {global_batch} is not divisible by {world} processes")
        if not 0 <= rank < world:
            raise DataError(f"rank {rank} is outside 0..{world - 1}")
        self.paths = [Path(p) for p in paths]
        self.T, self.B, self.rank, self.world = block_size, global_batch, rank, world
        self.b = global_batch // world
        self.step_tokens = global_batch * block_size
        self.shards = [read_shard(p) for p in self.paths]
        if max_tokens is not None:
            # Shards emptied by the cut stay in the list, so shard indices (and checkpoints) keep their meaning.
            self.shards = [s[:take] for s, take in zip(self.shards, _prefix_takes([len(s) for s in self.shards], max_tokens))]
        if vocab_size is not None:
            for p in self.paths:
                check_vocab(p, vocab_size)
        usable = [len(s) for s in self.shards if len(s) >= self.step_tokens + 1]
        if not usable:
            raise DataError(
                f"the split in {self.paths[0].parent} is too small for one step: a step needs "
                f"{self.step_tokens + 1:,} tokens ({global_batch} x {block_size} + 1) in one shard, the largest shard has "
                f"{max(len(s) for s in self.shards):,}"
                + (f" of the first {max_tokens:,} tokens" if max_tokens is not None else "")
                + "; lower the batch size or context, or prepare more data (or larger shards: data.shard_tokens)"
            )
        self.shard, self.pos, self.epoch, self.steps = 0, 0, 0, 0
        self._skip_small()

    def _skip_small(self) -> None:
        while len(self.shards[self.shard]) < self.pos + self.step_tokens + 1:
            self.pos = 0
            self.shard += 1
            if self.shard == len(self.shards):
                self.shard = 0
                self.epoch += 1

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._skip_small()
        toks = self.shards[self.shard]
        start = self.pos + self.rank * self.b * self.T
        buf = torch.from_numpy(np.asarray(toks[start:start + self.b * self.T + 1], dtype=np.int64))
        x = buf[:-1].view(self.b, self.T)
        y = buf[1:].view(self.b, self.T)
        self.pos += self.step_tokens
        self.steps += 1
        return x, y

    def seek_for_seed(self, seed: int) -> None:
        """Advance by a seed-dependent number of steps, spread over one pass of the split by the
        golden ratio so that different seeds start far apart (seed 0 starts at the beginning)."""
        steps_per_pass = max(1, sum(len(s) for s in self.shards) // self.step_tokens)
        for _ in range(int((seed * 0.6180339887498949) % 1.0 * steps_per_pass)):
            self.next_batch()

    def state_dict(self) -> dict:
        return {"shard": self.shard, "pos": self.pos, "epoch": self.epoch, "steps": self.steps}

    def load_state_dict(self, d: dict) -> None:
        try:
            shard, pos, epoch, steps = (int(d[k]) for k in STATE_KEYS)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"checkpoint's data position {d!r} needs integer {', '.join(STATE_KEYS)}; the checkpoint is damaged") from None
        if not 0 <= shard < len(self.shards) or not 0 <= pos <= len(self.shards[shard]) or pos % self.step_tokens:
            raise DataError(
                f"checkpoint's data position (shard {shard}, offset {pos}) does not fit this split "
                f"({len(self.shards)} shards, {self.step_tokens} tokens per step); the data or the batch shape changed"
            )
        self.shard, self.pos, self.epoch, self.steps = shard, pos, epoch, steps


def _prefix_takes(lengths: list[int], n: int) -> list[int]:
    """How many tokens each shard contributes to the split's first ``n`` tokens."""
    ends = np.cumsum([0] + lengths)
    return [int(min(max(n - start, 0), length)) for start, length in zip(ends[:-1], lengths)]


def nested_prefixes(paths: list[Path], sizes: list[int]) -> list[list[tuple[Path, int]]]:
    """Nested developmental subsets of a split: subset n is token positions [0, n), given per size as
    (shard, tokens taken from its start) pairs. Prefixes make every smaller subset part of every larger
    one, and each holds exactly n tokens; a size above the split's length is refused."""
    lengths = [len(read_shard(p)) for p in paths]
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DataError(f"subset size {n!r} is not a positive whole number of tokens")
        if n > sum(lengths):
            raise DataError(f"a subset of {n:,} tokens does not fit the split in {Path(paths[0]).parent}, "
                            f"which holds {sum(lengths):,}; prepare more data (data.small_tokens) or lower the size")
    return [[(Path(p), t) for p, t in zip(paths, _prefix_takes(lengths, int(n))) if t] for n in sizes]


def _first_tokens(paths: list[Path], n: int) -> np.ndarray:
    """The first ``n`` tokens of the split (fewer if it is shorter), read across shard boundaries."""
    parts = []
    for p in paths:
        if n <= 0:
            break
        part = read_shard(p)[:n]
        parts.append(part)
        n -= len(part)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def eval_windows(paths: list[Path], block_size: int, batch_size: int, max_tokens: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows over the first ``max_tokens`` predicted tokens of a split, in order:
    the fixed validation budget (the same tokens every time). The split is read as one stream, so a
    window may span two shards. Only whole windows are used: ``min(max_tokens, split tokens - 1) //
    block_size`` of them (the caller counts what it scored). The last batch may be smaller."""
    toks = _first_tokens(paths, max_tokens + 1)
    n_windows = max(0, len(toks) - 1) // block_size
    for first in range(0, n_windows, batch_size):
        rows = range(first, min(first + batch_size, n_windows))
        buf = torch.from_numpy(np.stack([np.asarray(toks[i * block_size:(i + 1) * block_size + 1], dtype=np.int64) for i in rows]))
        yield buf[:, :-1], buf[:, 1:]
