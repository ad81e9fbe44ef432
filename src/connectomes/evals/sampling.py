"""Seeded item subsets for the accuracy tasks (HellaSwag, MMLU) when an item limit is set.

One rule serves both tasks: items carry a stratum label (MMLU: the subject; HellaSwag: one stratum for
all), the limit is allocated to strata in proportion to their sizes by the largest-remainder method,
and each stratum's share is drawn uniformly without replacement with one numpy Generator seeded by
``seed``, strata in sorted order. With one stratum this is a plain uniform sample without replacement.

When the limit is at least the number of strata, a stratum whose share rounds to zero gets one item
and the others share the rest in proportion to their sizes, so a small limit still covers every MMLU
subject and a large one is exactly proportional. Below that, the largest remainders (the largest
strata, ties to the earlier stratum) get the items.

The alignment tasks (reading_times, fmri, langloc) never subsample: their scores are correlations over
a fixed stimulus set, and a different set would be a different measurement.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def _largest_remainder(sizes: Sequence[int], m: int) -> list[int]:
    """m items in proportion to sizes: floors of the exact quotas, then one more to the largest
    remainders (integers, never floats; the stable sort breaks ties by stratum order)."""
    c = sum(sizes)
    floors = [m * n // c for n in sizes]
    remainders = [m * n % c for n in sizes]
    for s in sorted(range(len(sizes)), key=lambda s: -remainders[s])[:m - sum(floors)]:
        floors[s] += 1
    return floors


def allocate(sizes: Sequence[int], limit: int) -> list[int]:
    """Items per stratum, proportional to ``sizes`` by largest remainder; when ``limit`` is at least the
    number of strata, a stratum that would get none gets one and the others share the rest, again in
    proportion to their sizes (repeated until none is left out). ``limit`` must lie in 1..sum(sizes)."""
    if not 0 < limit <= sum(sizes):
        raise ValueError(f"limit {limit} must lie in 1..{sum(sizes)}")
    fixed: set[int] = set()
    while True:
        free = [s for s in range(len(sizes)) if s not in fixed]
        share = dict(zip(free, _largest_remainder([sizes[s] for s in free], limit - len(fixed))))
        empty = {s for s in free if share[s] == 0} if limit >= len(sizes) else set()
        if not empty:
            return [1 if s in fixed else share[s] for s in range(len(sizes))]
        # a stratum that rounds to nothing has fewer than (rest / limit) items: one item for it never
        # exceeds its size, and the others' shares stay within theirs
        fixed |= empty


def sample(strata: Sequence[Hashable], limit: int, seed: int) -> tuple[list[int], dict]:
    """Indices (ascending) of the items to score and the record of how they were chosen.

    ``strata[i]`` is item i's stratum label. ``limit`` 0, or at least the item count, keeps all items.
    """
    n = len(strata)
    if not limit or limit >= n:
        return list(range(n)), {"selection": "all", "n": n, "of": n}
    labels = sorted(set(strata))
    members = {s: [] for s in labels}
    for i, s in enumerate(strata):
        members[s].append(i)
    counts = allocate([len(members[s]) for s in labels], limit)
    rng = np.random.default_rng(seed)
    chosen = []
    for s, c in zip(labels, counts):
        chosen += rng.choice(members[s], size=c, replace=False).tolist()
    how = "seeded uniform sample" if len(labels) == 1 else \
        "seeded stratified sample (proportional allocation, largest remainder, at least one per stratum)"
    return sorted(chosen), {"selection": how, "seed": seed, "n": limit, "of": n}
