"""The resumable batch stream (docs/method.md §2): contiguous windows of block_size+1 tokens.

A step consumes ``global_batch`` consecutive windows from the current position; rank r of ``world``
takes windows r*b .. (r+1)*b-1 (b = global_batch / world), so the set of sequences in a step is the
same whatever the process count. When a shard cannot supply a whole step the stream moves to the
next shard, wrapping to the first (a new epoch) after the last. The position is part of every
checkpoint, so a resumed run sees exactly the tokens it would have seen.

``max_tokens=n`` restricts the stream to a developmental subset of n tokens (:func:`subset_ranges`):
the split cut into chunks of ``SUBSET_CHUNK`` tokens, put in a pseudo-random order seeded by
``subset_seed`` (the unit's seed), first n tokens of that order, kept in that order. Within a seed every
smaller subset is part of every larger one, and each is spread over the whole split: a prefix would be
one document (a book) at small sizes, so sizes would differ in content as much as in amount. The subset
is read as a ring: a step takes B*T+1 tokens from the current position, wrapping around its end, and
the position advances by B*T modulo n, so a size is the number of tokens trained: every one of the n
tokens is predicted once per n tokens read (a stream that stopped at the end of the subset would leave
up to a step's worth untrained, a quarter of a 16k subset in steps of 4k).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..core.config import check_seed
from ..core.errors import DataError
from .shards import check_vocab, read_shard

STATE_KEYS = ("shard", "pos", "epoch", "steps")


class TokenStream:
    def __init__(self, paths: list[Path], block_size: int, global_batch: int, rank: int = 0, world: int = 1,
                 vocab_size: int | None = None, max_tokens: int | None = None, subset_seed: int = 0):
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
        self.ring = max_tokens is not None  # one in-memory shard, read as a ring: the seed's subset, in its order
        if self.ring:
            self.shards = [_read_ranges(self.shards, subset_ranges([len(s) for s in self.shards], max_tokens, subset_seed))]
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
        if not self.ring:
            self._skip_small()

    @property
    def tokens_per_pass(self) -> int:
        """The tokens one pass over the data predicts (trains on)."""
        return tokens_per_pass([len(s) for s in self.shards], self.step_tokens, len(self.shards[0]) if self.ring else None)

    def _skip_small(self) -> None:
        while len(self.shards[self.shard]) < self.pos + self.step_tokens + 1:
            self.pos = 0
            self.shard += 1
            if self.shard == len(self.shards):
                self.shard = 0
                self.epoch += 1

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ring:
            return self._ring_batch()
        self._skip_small()
        toks = self.shards[self.shard]
        start = self.pos + self.rank * self.b * self.T
        buf = torch.from_numpy(np.asarray(toks[start:start + self.b * self.T + 1], dtype=np.int64))
        x = buf[:-1].view(self.b, self.T)
        y = buf[1:].view(self.b, self.T)
        self.pos += self.step_tokens
        self.steps += 1
        return x, y

    def _ring_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        toks = self.shards[0]
        n = len(toks)
        start = self.pos + self.rank * self.b * self.T
        buf = torch.from_numpy(toks[np.arange(start, start + self.b * self.T + 1) % n].astype(np.int64))
        x = buf[:-1].view(self.b, self.T)
        y = buf[1:].view(self.b, self.T)
        self.epoch += (self.pos + self.step_tokens) // n
        self.pos = (self.pos + self.step_tokens) % n
        self.steps += 1
        return x, y

    def seek_for_seed(self, seed: int) -> None:
        """Advance by the steps :func:`seed_start` gives ``seed`` on this stream (seed 0 starts at the beginning).
        A subset stream has no seed start: its seed chose the subset and its order."""
        if self.ring:
            raise ValueError("a subset stream starts at its beginning: its seed chose the subset (subset_seed)")
        for _ in range(seed_start(seed, [len(s) for s in self.shards], self.step_tokens)[1]):
            self.next_batch()

    def state_dict(self) -> dict:
        return {"shard": self.shard, "pos": self.pos, "epoch": self.epoch, "steps": self.steps}

    def load_state_dict(self, d: dict) -> None:
        try:
            shard, pos, epoch, steps = (int(d[k]) for k in STATE_KEYS)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"checkpoint's data position {d!r} needs integer {', '.join(STATE_KEYS)}; the checkpoint is damaged") from None
        if self.ring:
            self._check_ring_state(shard, pos, epoch, steps)
        elif not 0 <= shard < len(self.shards) or not 0 <= pos <= len(self.shards[shard]) or pos % self.step_tokens:
            raise DataError(
                f"checkpoint's data position (shard {shard}, offset {pos}) does not fit this split "
                f"({len(self.shards)} shards, {self.step_tokens} tokens per step); the data or the batch shape changed"
            )
        self.shard, self.pos, self.epoch, self.steps = shard, pos, epoch, steps

    def _check_ring_state(self, shard: int, pos: int, epoch: int, steps: int) -> None:
        """A ring starts at 0 and moves by a step's tokens, so its position and pass follow from its steps."""
        n = len(self.shards[0])
        if steps < 0 or (shard, epoch, pos) != (0, *divmod(steps * self.step_tokens, n)):
            raise DataError(
                f"checkpoint's data position (shard {shard}, offset {pos}, pass {epoch} after {steps} steps) does not fit "
                f"this {n:,}-token subset read {self.step_tokens} tokens per step; the data or the batch shape changed"
            )


GOLDEN = 0.6180339887498949
# Seeds from here on take their golden fraction exactly, in 128-bit fixed point: a float product s * GOLDEN
# keeps fewer fraction bits the larger s is (none from 2**53), so every large seed would start at step 0.
# Below it, the float rule every run so far used, unchanged.
EXACT_GOLDEN_FROM = 2**32
_GOLDEN_BITS = 128
_GOLDEN_FIXED = (math.isqrt(5 << 2 * _GOLDEN_BITS) - (1 << _GOLDEN_BITS)) >> 1  # floor((sqrt 5 - 1) / 2 * 2**128)


def golden_step(seed: int, steps_per_pass: int) -> int:
    """floor(frac(seed * 0.618...) * steps_per_pass): ``seed``'s golden-ratio step of a pass."""
    if seed < EXACT_GOLDEN_FROM:
        return int((seed * GOLDEN) % 1.0 * steps_per_pass)
    return (seed * _GOLDEN_FIXED % (1 << _GOLDEN_BITS)) * steps_per_pass >> _GOLDEN_BITS


def pass_steps(lengths: list[int], step_tokens: int) -> int:
    """Steps in one pass over shards of ``lengths``: a shard gives a step while a whole step and its last
    target fit, so a tail shorter than that is not read."""
    return sum((n - 1) // step_tokens for n in lengths if n > step_tokens)


def tokens_per_pass(lengths: list[int], step_tokens: int, max_tokens: int | None = None) -> int:
    """The tokens one pass predicts: all n of an n-token subset (read as a ring), or a whole split's steps
    times the tokens of a step (each shard's tail shorter than a step is not trained)."""
    return int(max_tokens) if max_tokens is not None else pass_steps(lengths, step_tokens) * step_tokens


def seed_start(seed: int, lengths: list[int], step_tokens: int) -> tuple[int, int]:
    """(golden, steps): where ``seed``'s stream over shards of ``lengths`` starts, as steps skipped.

    Seeds are spread over one pass by the golden ratio (``golden``), so that different seeds start far apart.
    A pass has only as many start positions as it has steps, and two seeds' golden positions can be the same
    step of the pass (4 steps: seeds 0 and 2); the later seed then takes the next position no earlier seed of
    its round holds. A round is ``positions`` consecutive seeds (0..positions-1, then the next ones), which
    fill every start once, so only the seeds of ``seed``'s own round decide its start: the time is bounded
    by the pass, not by the seed. Seeds that do not collide skip exactly ``golden`` steps."""
    check_seed(seed, "a data stream's seed")
    steps_per_pass = max(1, sum(lengths) // step_tokens)  # the golden spread's scale
    positions = max(1, pass_steps(lengths, step_tokens))  # distinct starts in a pass
    taken: set[int] = set()
    for s in range(seed - seed % positions, seed + 1):
        golden = golden_step(s, steps_per_pass)
        at = golden % positions
        while at in taken:
            at = (at + 1) % positions
        taken.add(at)
    return golden, golden + (at - golden % positions) % positions


SUBSET_CHUNK = 4096  # tokens per chunk of a developmental subset: many passages even in small subsets
# The chunk order's generator is seeded by (SUBSET_SALT, seed): its own stream, apart from the model's init
# and the random arms' draws, which the same seed also seeds.
SUBSET_SALT = 3_000_017


def subset_ranges(lengths: list[int], n: int, seed: int = 0) -> list[tuple[int, int]]:
    """The token ranges [a, b) of the split (its shards read as one stream) that make up ``seed``'s
    developmental subset of ``n`` tokens, in the order it is read. The split is cut into chunks of
    ``SUBSET_CHUNK`` tokens, the chunks are ordered by a permutation seeded by ``seed``, and the subset is
    the first n tokens of that order (its last chunk taken from the chunk's start), kept in that order.
    So each subset holds exactly n tokens, a seed's smaller subsets lie inside its larger ones (and read
    as their beginning), a subset samples the whole split rather than its first documents, and seeds
    differ in which passages they train and in what order."""
    total = sum(lengths)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"subset size {n!r} is not a positive whole number of tokens")
    if n > total:
        raise DataError(f"a subset of {n:,} tokens does not fit the split, which holds {total:,}; "
                        "prepare more data (data.small_tokens) or lower the size")
    check_seed(seed, "a subset's seed")
    starts = np.arange(0, total, SUBSET_CHUNK)
    ranges, left = [], int(n)
    for i in np.random.default_rng([SUBSET_SALT, int(seed)]).permutation(len(starts)):
        a = int(starts[i])
        take = min(SUBSET_CHUNK, total - a, left)
        ranges.append((a, a + take))
        left -= take
        if not left:
            break
    return ranges


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
