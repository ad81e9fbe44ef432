"""The batch stream and the fixed validation windows, on shards whose token at split position p is
p itself, so every expected window can be written down by hand."""

import json

import numpy as np
import pytest
import torch

from connectomes.data.shards import write_shard
from connectomes.data import stream
from connectomes.data.stream import SUBSET_CHUNK, TokenStream, eval_windows, subset_ranges
from connectomes.core.errors import DataError


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


# ---- nested developmental subsets (chunks of the split in one fixed random order)

def positions(ranges) -> set:
    return {p for a, b in ranges for p in range(a, b)}


def test_nested_subsets_are_exact_nested_disjoint_and_cover_the_split():
    lengths = [30_000, 5_000, 40_000]  # 75,000 tokens: 18 whole chunks of 4,096 and one of 1,272
    sizes = [1, 1_000, 4_096, 10_000, 50_000, 75_000]
    subsets = [subset_ranges(lengths, n) for n in sizes]
    for n, ranges in zip(sizes, subsets):
        assert sum(b - a for a, b in ranges) == n
        assert ranges == sorted(ranges) and all(b1 <= a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:]))
        assert all(a % SUBSET_CHUNK == 0 and b - a <= SUBSET_CHUNK for a, b in ranges)  # each range starts a chunk
    for small, large in zip(subsets, subsets[1:]):
        assert positions(small) <= positions(large)
    assert positions(subsets[-1]) == set(range(75_000))
    assert subset_ranges(lengths, 10_000) == subsets[3]  # one fixed order: the same subset every time


def test_a_subset_samples_the_whole_split_not_its_first_documents():
    ranges = subset_ranges([1_000_000], 100_000)  # 10% of the split: about 25 chunks
    deciles = {a * 10 // 1_000_000 for a, _ in ranges}
    assert len(deciles) >= 8  # a prefix would sit in the first decile alone


@pytest.mark.parametrize("size,message", [(221, "a subset of 221 tokens does not fit the split, which holds 220"),
                                          (0, "subset size 0 is not"), (1.5, "subset size 1.5 is not"),
                                          (True, "subset size True is not")])
def test_subset_sizes_that_do_not_fit_are_refused(size, message):
    with pytest.raises(DataError, match=message):
        subset_ranges([100, 20, 100], size)


@pytest.mark.parametrize("n", [33, 100, 130, 153, 219])
def test_a_limited_stream_reads_its_subset_in_split_order_and_wraps_exactly(tmp_path, monkeypatch, n):
    # chunks of 16 tokens, so the subset is scattered over all three shards; token position p holds p
    monkeypatch.setattr(stream, "SUBSET_CHUNK", 16)
    tokens = np.array(sorted(positions(stream.subset_ranges([100, 20, 100], n))))
    s = TokenStream(split_of(tmp_path, [100, 20, 100]), 8, 4, max_tokens=n)
    starts = list(range(0, n - 32, 32))  # 32 tokens per step (+1 target) in the n-token subset
    for _ in range(2):
        for k in starts:
            x, y = s.next_batch()
            assert torch.equal(x.flatten(), torch.from_numpy(tokens[k:k + 32]))
            assert torch.equal(y.flatten(), torch.from_numpy(tokens[k + 1:k + 33]))
    assert s.state_dict()["epoch"] == 1 and int(s.next_batch()[0][0, 0]) == tokens[0]
    assert s.state_dict()["epoch"] == 2


def test_a_limited_stream_resumes_and_a_subset_below_one_step_is_refused(tmp_path):
    paths = split_of(tmp_path, [100, 20, 100])
    s = TokenStream(paths, 8, 4, max_tokens=160)
    for _ in range(4):
        s.next_batch()
    t = TokenStream(paths, 8, 4, max_tokens=160)
    t.load_state_dict(s.state_dict())
    assert torch.equal(s.next_batch()[0], t.next_batch()[0])
    with pytest.raises(DataError, match="has 32 in the 32-token subset"):
        TokenStream(paths, 8, 4, max_tokens=32)


def first_token(paths, seed: int, **kw) -> int:
    s = TokenStream(paths, 8, 4, **kw)  # 32 tokens per step
    s.seek_for_seed(seed)
    return int(s.next_batch()[0][0, 0])


def test_seeds_start_at_their_golden_ratio_step_when_no_earlier_seed_holds_it(tmp_path):
    # 3201 tokens: 100 steps of 32 (+1 target); seed s skips floor(frac(s * 0.618...) * 100) steps
    paths = split_of(tmp_path, [3201])
    starts = [first_token(paths, seed) for seed in range(6)]
    assert starts == [32 * int((seed * 0.6180339887498949) % 1.0 * 100) for seed in range(6)] == [0, 1952, 736, 2720, 1504, 288]
    assert [stream.seed_start(seed, [3201], 32) for seed in range(3)] == [(0, 0), (61, 61), (23, 23)]


def test_seeds_whose_golden_steps_coincide_start_apart_while_the_pass_has_room(tmp_path):
    # 4 steps of 32 in 129 tokens: golden steps 0, 2, 0, 3 (seed 2 lands on seed 0's start) -> 0, 2, 1, 3;
    # the pass then has no free start left, so seed 4 begins a new round at its golden step (1)
    paths = split_of(tmp_path, [129])
    assert [stream.seed_start(seed, [129], 32) for seed in range(5)] == [(0, 0), (2, 2), (0, 1), (3, 3), (1, 1)]
    assert [first_token(paths, seed) for seed in range(4)] == [0, 64, 32, 96]


def test_a_subset_stream_counts_the_starts_its_pass_really_has(tmp_path):
    # a 128-token subset holds 3 steps of 32 (the 4th lacks its last target): golden steps 0, 2, 0 ->
    # seed 2 moves to step 1; seed 3's golden step 3 wraps onto step 0 of a new round
    paths = split_of(tmp_path, [100, 20, 100])
    assert [stream.seed_start(seed, [128], 32) for seed in range(4)] == [(0, 0), (2, 2), (0, 1), (3, 3)]
    firsts = [first_token(paths, seed, max_tokens=128) for seed in range(4)]
    assert len(set(firsts[:3])) == 3 and firsts[3] == firsts[0]
