"""Seeded item subsets: allocation by hand, exact draws for a fixed seed, every stratum present."""

import numpy as np
import pytest

from connectomes.evals.sampling import allocate, sample


def test_allocation_is_proportional_by_largest_remainder():
    # quotas 8 * (10, 5, 1) / 16 = 5, 2.5, 0.5: remainders tie at 8/16, the earlier stratum wins
    assert allocate([10, 5, 1], 2) == [1, 1, 0]  # fewer items than strata: largest remainders
    # limit >= strata: the 0.5 stratum gets one, the other 7 go 10:5 -> 4.67, 2.33 -> 5, 2
    assert allocate([10, 5, 1], 8) == [5, 2, 1]
    assert allocate([3, 6, 1], 5) == [1, 3, 1]  # 1.5, 3, 0.5 -> c fixed at 1; 4 over 3:6 -> 1.33, 2.67
    assert allocate([100, 1, 1, 1], 4) == [1, 1, 1, 1]
    assert allocate([30, 60, 10], 10) == [3, 6, 1]  # exact quotas stay exact
    assert allocate([3, 6, 1], 10) == [3, 6, 1]
    with pytest.raises(ValueError):
        allocate([3, 6, 1], 11)


def test_uniform_sample_is_numpys_draw_without_replacement():
    ids, how = sample([0] * 10, 3, seed=0)
    assert ids == [5, 6, 9]
    assert ids == sorted(np.random.default_rng(0).choice(10, 3, replace=False).tolist())
    assert how == {"selection": "seeded uniform sample", "seed": 0, "n": 3, "of": 10}
    assert sample([0] * 10, 3, seed=0) == (ids, how)  # deterministic
    assert sample([0] * 10, 3, seed=1)[0] == [3, 4, 7]  # another seed, another sample


def test_no_limit_or_a_large_one_keeps_everything():
    assert sample([0] * 4, 0, seed=3) == ([0, 1, 2, 3], {"selection": "all", "n": 4, "of": 4})
    assert sample(["a", "b"], 9, seed=3) == ([0, 1], {"selection": "all", "n": 2, "of": 2})


def test_stratified_sample_exact_ids_and_counts():
    strata = ["b"] * 6 + ["a"] * 3 + ["c"]  # items 0-5 b, 6-8 a, 9 c
    ids, how = sample(strata, 5, seed=0)
    # allocation over sorted strata a, b, c: [1, 3, 1]; one generator draws a, then b, then c
    rng = np.random.default_rng(0)
    expect = rng.choice([6, 7, 8], 1, replace=False).tolist() + rng.choice(range(6), 3, replace=False).tolist() + [9]
    assert ids == sorted(expect) == [1, 2, 4, 8, 9]
    assert how["selection"].startswith("seeded stratified sample") and (how["n"], how["of"], how["seed"]) == (5, 10, 0)
    assert sample(strata, 5, seed=1)[0] != ids


def test_every_stratum_present_when_the_limit_allows():
    rng = np.random.default_rng(5)
    sizes = rng.integers(50, 400, size=57)  # MMLU-like: 100..1534 per subject
    strata = np.repeat(np.arange(57), sizes).tolist()
    for limit in (57, 60, 200, 1000):
        ids, _ = sample(strata, limit, seed=2)
        counts = np.bincount(np.asarray(strata)[ids], minlength=57)
        assert len(ids) == len(set(ids)) == limit and counts.min() >= 1
        assert np.all(counts <= sizes)
        if limit == 1000:  # every quota is at least one: plain proportional allocation, each within one of its quota
            assert sizes.min() * limit / sizes.sum() >= 1 and np.all(np.abs(counts - limit * sizes / sizes.sum()) < 1)
