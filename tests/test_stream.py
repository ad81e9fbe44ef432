"""The batch stream and the fixed validation windows, on shards whose token at split position p is
p itself, so every expected window can be written down by hand."""

import json

import numpy as np
import pytest
import torch

from connectomes.data.shards import write_shard
from connectomes.data.stream import TokenStream, eval_windows, nested_prefixes
from connectomes.errors import DataError


def split_of(folder, sizes: list[int]) -> list:
    """Shards holding consecutive positions: shard k starts at sum(sizes[:k])."""
    paths, start = [], 0
    for k, n in enumerate(sizes):
        paths.append(write_shard(folder / f"train_{k:06d}.bin", np.arange(start, start + n)))
        start += n
    return paths


def windows_from(starts: list[int], T: int) -> torch.Tensor:
    return torch.stack([torch.arange(s, s + T) for s in starts])


def test_windows_are_contiguous_and_targets_shift_by_one(tmp_path):
    T, B = 8, 4
    s = TokenStream(split_of(tmp_path, [1000]), T, B)
    for step in range(3):
        x, y = s.next_batch()
        assert x.dtype == torch.int64 and x.shape == (B, T)
        assert torch.equal(x, windows_from([step * B * T + i * T for i in range(B)], T))
        assert torch.equal(y, x + 1)


def test_shards_that_cannot_supply_a_step_are_left_and_the_split_cycles(tmp_path):
    # 32 tokens per step (+1 for the last target): shard 0 (100) gives 3 steps, shard 1 (20) none,
    # shard 2 (100, positions 120..219) 3 steps, then epoch 1 starts again at position 0.
    s = TokenStream(split_of(tmp_path, [100, 20, 100]), 8, 4)
    firsts, epochs = [], []
    for _ in range(8):
        firsts.append(int(s.next_batch()[0][0, 0]))
        epochs.append(s.state_dict()["epoch"])
    assert firsts == [0, 32, 64, 120, 152, 184, 0, 32]
    assert epochs == [0, 0, 0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_together_give_exactly_the_single_process_batch(tmp_path, world):
    paths = split_of(tmp_path, [100, 20, 100])
    one = TokenStream(paths, 8, 4)
    ranks = [TokenStream(paths, 8, 4, rank=r, world=world) for r in range(world)]
    for _ in range(8):  # across a shard change and an epoch wrap
        x, y = one.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert all(p[0].shape == (4 // world, 8) for p in parts)
        assert torch.equal(x, torch.cat([p[0] for p in parts])) and torch.equal(y, torch.cat([p[1] for p in parts]))


@pytest.mark.parametrize("k", range(9))
def test_resume_from_a_saved_position_sees_exactly_the_same_tokens(tmp_path, k):
    paths = split_of(tmp_path, [100, 20, 100])
    s = TokenStream(paths, 8, 4)
    for _ in range(k):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))
    assert set(state) == {"shard", "pos", "epoch", "steps"} and state["steps"] == k
    want = [s.next_batch() for _ in range(4)]
    t = TokenStream(paths, 8, 4)
    t.load_state_dict(state)
    for (a, b), (c, d) in zip(want, [t.next_batch() for _ in range(4)]):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert t.state_dict() == s.state_dict()


@pytest.mark.parametrize("state,message", [
    ({"shard": 0, "pos": 0, "epoch": 0}, "needs integer shard, pos, epoch, steps"),
    ({"shard": 3, "pos": 0, "epoch": 0, "steps": 0}, r"\(shard 3, offset 0\) does not fit this split \(3 shards, 32 tokens per step\)"),
    ({"shard": 0, "pos": 16, "epoch": 0, "steps": 0}, "the data or the batch shape changed"),
])
def test_a_position_that_does_not_fit_is_refused(tmp_path, state, message):
    s = TokenStream(split_of(tmp_path, [100, 20, 100]), 8, 4)
    with pytest.raises(DataError, match=message):
        s.load_state_dict(state)


def test_split_smaller_than_one_step_says_how_many_tokens_are_needed(tmp_path):
    with pytest.raises(DataError, match=r"too small for one step: a step needs 33 tokens \(4 x 8 \+ 1\) in one shard, the largest shard has 30"):
        TokenStream(split_of(tmp_path, [20, 30]), 8, 4)


def test_token_outside_the_model_vocabulary(tmp_path):
    paths = split_of(tmp_path, [100, 300])
    TokenStream(paths, 8, 4, vocab_size=400)
    with pytest.raises(DataError, match=r"train_000001\.bin holds token id 399, outside the model's vocabulary of 256; the tokenizer"):
        TokenStream(paths, 8, 4, vocab_size=256)


@pytest.mark.parametrize("rank,world,message", [(0, 3, "not divisible by 3 processes"), (2, 2, "rank 2 is outside 0..1")])
def test_bad_process_layout(tmp_path, rank, world, message):
    with pytest.raises(DataError, match=message):
        TokenStream(split_of(tmp_path, [100]), 8, 4, rank=rank, world=world)


# ---------------------------------------------------------------- validation windows


def test_eval_windows_cover_the_first_tokens_in_order(tmp_path):
    batches = list(eval_windows(split_of(tmp_path, [50, 50]), 8, 3, 40))
    assert [x.shape[0] for x, _ in batches] == [3, 2]  # 40 // 8 = 5 windows
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert torch.equal(x, windows_from([0, 8, 16, 24, 32], 8)) and torch.equal(y, x + 1)


def test_eval_windows_read_across_shards_and_use_all_of_a_short_split(tmp_path):
    paths = split_of(tmp_path, [50, 50])
    x = torch.cat([b[0] for b in eval_windows(paths, 8, 4, 10_000)])
    assert torch.equal(x, windows_from(list(range(0, 96, 8)), 8))  # (100 - 1) // 8 = 12 windows; window 6 spans both shards
    again = torch.cat([b[0] for b in eval_windows(paths, 8, 4, 10_000)])
    assert torch.equal(x, again)


def test_eval_windows_budget_below_one_window(tmp_path):
    assert list(eval_windows(split_of(tmp_path, [50]), 8, 4, 7)) == []


# ---- nested developmental subsets (prefixes of the split)

def test_nested_prefixes_are_exact_and_nested(tmp_path):
    paths = split_of(tmp_path, [100, 20, 100])
    subsets = nested_prefixes(paths, [50, 100, 110, 220])
    assert [[(p.name, t) for p, t in s] for s in subsets] == [
        [("train_000000.bin", 50)],
        [("train_000000.bin", 100)],
        [("train_000000.bin", 100), ("train_000001.bin", 10)],
        [("train_000000.bin", 100), ("train_000001.bin", 20), ("train_000002.bin", 100)]]
    for small, large in zip(subsets, subsets[1:]):
        assert all(t <= dict(large)[p] for p, t in small)
    assert [sum(t for _, t in s) for s in subsets] == [50, 100, 110, 220]


@pytest.mark.parametrize("sizes,message", [([100, 221], "a subset of 221 tokens does not fit the split .* which holds 220"),
                                           ([0], "subset size 0 is not"), ([1.5], "subset size 1.5 is not")])
def test_nested_prefixes_refuse_sizes_that_do_not_fit(tmp_path, sizes, message):
    with pytest.raises(DataError, match=message):
        nested_prefixes(split_of(tmp_path, [100, 20, 100]), sizes)


@pytest.mark.parametrize("n", [33, 100, 130, 153, 219])
def test_a_limited_stream_never_reads_past_n_and_wraps_exactly(tmp_path, n):
    # 32 tokens per step (+1 target). Within [0, n): shard 0 holds min(n, 100) tokens, shard 1 tokens
    # 100..min(n, 120) (never a whole step), shard 2 tokens 120..n.
    s = TokenStream(split_of(tmp_path, [100, 20, 100]), 8, 4, max_tokens=n)
    starts = [p for p in range(0, min(n, 100) - 32, 32)] + [p for p in range(120, n - 32, 32)]
    seen = []
    for _ in range(2 * len(starts) + 1):
        x, y = s.next_batch()
        assert int(y.max()) < n  # token position p holds p: nothing at or beyond n
        seen.append(int(x[0, 0]))
    assert seen == starts + starts + starts[:1]
    assert s.state_dict()["epoch"] == 2


def test_a_limited_stream_resumes_and_a_prefix_below_one_step_is_refused(tmp_path):
    paths = split_of(tmp_path, [100, 20, 100])
    s = TokenStream(paths, 8, 4, max_tokens=160)
    for _ in range(4):
        s.next_batch()
    t = TokenStream(paths, 8, 4, max_tokens=160)
    t.load_state_dict(s.state_dict())
    assert torch.equal(s.next_batch()[0], t.next_batch()[0])
    with pytest.raises(DataError, match="has 32 of the first 32 tokens"):
        TokenStream(paths, 8, 4, max_tokens=32)
