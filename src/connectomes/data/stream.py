"""The resumable batch stream (docs/method.md §2): contiguous windows of block_size+1 tokens.

A step consumes ``global_batch`` consecutive windows from the current position; rank r of ``world``
takes windows r*b .. (r+1)*b-1 (b = global_batch / world), so the set of sequences in a step is the
same whatever the process count. When a shard cannot supply a whole step the stream moves to the
next shard, wrapping to the first (a new epoch) after the last. The position is part of every
checkpoint, so a resumed run sees exactly the tokens it would have seen.

``max_tokens=n`` restricts the stream to a developmental subset of n tokens (:func:`subset_ranges`):
the split cut into chunks of ``SUBSET_CHUNK`` tokens, taken in one fixed pseudo-random order, first
n tokens of that order. Every smaller subset is part of every larger one, and each is spread over the
whole split: a prefix would be one document (a book) at small sizes, so sizes would differ in content
as much as in amount. The stream then cycles over that subset alone, read in split order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..core.errors import DataError
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
        if max_tokens is not None:  # one in-memory shard: the subset's chunks, in split order
            self.shards = [_read_ranges(self.shards, subset_ranges([len(s) for s in self.shards], max_tokens))]
        if vocab_size is not None:
            for p in self.paths:
                check_vocab(p, vocab_size)
        usable = [len(s) for s in self.shards if len(s) >= self.step_tokens + 1]
        if not usable:
            raise DataError(
                f"the split in {self.paths[0].parent} is too small for one step: a step needs "
                f"{self.step_tokens + 1:,} tokens ({global_batch} x {block_size} + 1) in one shard, the largest shard has "
                f"{max(len(s) for s in self.shards):,}"
                + (f" in the {max_tokens:,}-token subset" if max_tokens is not None else "")
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
        """Advance by the steps :func:`seed_start` gives ``seed`` on this stream (seed 0 starts at the beginning)."""
        for _ in range(seed_start(seed, [len(s) for s in self.shards], self.step_tokens)[1]):
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


GOLDEN = 0.6180339887498949


def seed_start(seed: int, lengths: list[int], step_tokens: int) -> tuple[int, int]:
    """(golden, steps): where ``seed``'s stream over shards of ``lengths`` starts, as steps skipped.

    Seeds are spread over one pass by the golden ratio (``golden``), so that different seeds start far apart.
    A pass has only as many start positions as it has steps, and on a small subset two seeds' golden
    positions can be the same step of the pass (16k tokens in steps of 4k: seeds 0 and 2); the later seed
    then takes the next position no earlier seed holds, so seeds start apart while the pass has room
    (a connectome arm, whose init does not depend on the seed, would otherwise train the same model
    twice). Seeds that do not collide skip exactly ``golden`` steps, as before this rule."""
    steps_per_pass = max(1, sum(lengths) // step_tokens)  # the golden spread's scale
    positions = max(1, sum((n - 1) // step_tokens for n in lengths if n > step_tokens))  # distinct starts in a pass
    taken: set[int] = set()
    for s in range(seed + 1):
        if len(taken) == positions:  # more seeds than starts: a new round
            taken = set()
        golden = int((s * GOLDEN) % 1.0 * steps_per_pass)
        at = golden % positions
        while at in taken:
            at = (at + 1) % positions
        taken.add(at)
    return golden, golden + (at - golden % positions) % positions


SUBSET_CHUNK = 4096  # tokens per chunk of a developmental subset: many passages even in small subsets
SUBSET_SEED = 0      # the chunk order: one for every size, arm and seed, so units differ only in what they vary


def subset_ranges(lengths: list[int], n: int) -> list[tuple[int, int]]:
    """The token ranges [a, b) of the split (its shards read as one stream) that make up the
    developmental subset of ``n`` tokens, in split order. The split is cut into chunks of
    ``SUBSET_CHUNK`` tokens, the chunks are ordered by a permutation seeded with ``SUBSET_SEED``, and
    the subset is the first n tokens of that order (its last chunk taken from the chunk's start).
    So each subset holds exactly n tokens, every smaller subset lies inside every larger one, and a
    subset samples the whole split rather than its first documents."""
    total = sum(lengths)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"subset size {n!r} is not a positive whole number of tokens")
    if n > total:
        raise DataError(f"a subset of {n:,} tokens does not fit the split, which holds {total:,}; "
                        "prepare more data (data.small_tokens) or lower the size")
    starts = np.arange(0, total, SUBSET_CHUNK)
    ranges, left = [], int(n)
    for i in np.random.default_rng(SUBSET_SEED).permutation(len(starts)):
        a = int(starts[i])
        take = min(SUBSET_CHUNK, total - a, left)
        ranges.append((a, a + take))
        left -= take
        if not left:
            break
    return sorted(ranges)


def _read_ranges(shards: list[np.ndarray], ranges: list[tuple[int, int]]) -> np.ndarray:
    """The tokens of global ranges [a, b) of shards read as one stream, concatenated in order."""
    ends = np.cumsum([0] + [len(s) for s in shards])
    parts = []
    for a, b in ranges:
        for k, s in enumerate(shards):
            lo, hi = max(a, ends[k]), min(b, ends[k + 1])
            if lo < hi:
                parts.append(np.asarray(s[lo - ends[k]:hi - ends[k]]))
    return np.concatenate(parts)


def _first_tokens(paths: list[Path], n: int, skip: int = 0) -> np.ndarray:
    """``n`` tokens of the split from token ``skip`` on (fewer if it is shorter), read across shard boundaries."""
    parts = []
    for p in paths:
        if n <= 0:
            break
        shard = read_shard(p)
        if skip >= len(shard):
            skip -= len(shard)
            continue
        part = shard[skip:skip + n]
        skip = 0
        parts.append(part)
        n -= len(part)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def eval_windows(paths: list[Path], block_size: int, batch_size: int, max_tokens: int,
                 offset: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows over ``max_tokens`` predicted tokens of a split, in order, starting after
    its first ``offset`` predicted tokens: the fixed validation budget (the same tokens every time). With
    ``offset`` = one budget the windows predict none of the tokens the first budget's windows predict (the
    token at the boundary is a target there and only context here). The split is read as one stream, so a
    window may span two shards. Only whole windows are used: ``min(max_tokens, split tokens - offset - 1)
    // block_size`` of them (the caller counts what it scored). The last batch may be smaller."""
    toks = _first_tokens(paths, max_tokens + 1, skip=offset)
    n_windows = max(0, len(toks) - 1) // block_size
    for first in range(0, n_windows, batch_size):
        rows = range(first, min(first + batch_size, n_windows))
        buf = torch.from_numpy(np.stack([np.asarray(toks[i * block_size:(i + 1) * block_size + 1], dtype=np.int64) for i in rows]))
        yield buf[:, :-1], buf[:, 1:]
