"""Controls that keep one statistic of a connectome and redraw the rest (issue 30; docs/method.md §4).

Each control is a function of one ternary tensor (and a generator) applied to every tensor of a connectome
with a generator per (seed, tensor name), so a draw never depends on tensor order. What each keeps:

- ``rewire``:    every row's and every column's alive count (the bipartite degree sequences), positions
                 redrawn by degree-preserving edge swaps; signs redrawn at the tensor's exact +/- count.
- ``keep_rows``: every row's alive count, positions uniform within the row; signs as ``rewire``.
- ``keep_cols``: every column's alive count likewise.
- ``low_rank``:  a rank-r factorisation of the ternary matrix (factors stored at fp16); the mask is the top-k
                 of the reconstruction's magnitude with exactly the tensor's alive count k, the signs the
                 reconstruction's. Deterministic: no seed.

Rows and columns are a weight's as stored: a Linear weight is (out, in), so a row's count is how many inputs
an output unit keeps (its in-degree) and a column's how many outputs an input feeds (its out-degree).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .ternary import Connectome, _tensor_seed

# Edge swaps are proposed in rounds of alive/2 disjoint pairs; a round is cheap (vectorised), so the chain is
# run to twice the rounds it needed to reach its null overlap, and never fewer than this.
MIN_ROUNDS = 10
MAX_ROUNDS = 400


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(_tensor_seed(seed, name))


def signs_at_ratio(mask: np.ndarray, positives: int, rng: np.random.Generator) -> np.ndarray:
    """An int8 ternary tensor: ``mask`` with exactly ``positives`` of its alive entries +1 (uniformly chosen), the rest -1."""
    flat = mask.reshape(-1)
    alive = np.flatnonzero(flat)
    signs = np.full(alive.size, -1, dtype=np.int8)
    signs[rng.permutation(alive.size)[:positives]] = 1
    out = np.zeros(flat.size, dtype=np.int8)
    out[alive] = signs
    return out.reshape(mask.shape)


def null_overlap(mask: np.ndarray) -> float:
    """Expected number of the mask's edges that a uniform bipartite graph with its row and column counts also
    has: sum over its edges of min(1, r_i c_j / alive) (the Chung-Lu approximation of the edge probability)."""
    alive = int(mask.sum())
    if alive == 0:
        return 0.0
    r, c = mask.sum(1).astype(np.float64), mask.sum(0).astype(np.float64)
    i, j = np.nonzero(mask)
    return float(np.minimum(1.0, r[i] * c[j] / alive).sum())


def _swap_round(rows, cols, present, n_cols, rng) -> int:
    """One round of degree-preserving swaps, in place: the alive edges are paired at random and each pair
    (r1, c1), (r2, c2) becomes (r1, c2), (r2, c1) where that keeps the graph simple (both new edges absent and
    no two swaps of the round creating the same edge). Returns the swaps made."""
    half = rows.size // 2
    perm = rng.permutation(rows.size)
    a, b = perm[:half], perm[half:2 * half]
    r1, c1, r2, c2 = rows[a], cols[a], rows[b], cols[b]
    new1, new2 = r1 * n_cols + c2, r2 * n_cols + c1
    ok = (r1 != r2) & (c1 != c2) & ~present[new1] & ~present[new2]
    idx = np.flatnonzero(ok)
    keys = np.concatenate([new1[idx], new2[idx]])
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    ok[idx[dup[:idx.size] | dup[idx.size:]]] = False
    present[r1[ok] * n_cols + c1[ok]] = False
    present[r2[ok] * n_cols + c2[ok]] = False
    present[new1[ok]] = True
    present[new2[ok]] = True
    cols[a[ok]], cols[b[ok]] = c2[ok], c1[ok]
    return int(ok.sum())


def rewire_mask(mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The mask rewired by degree-preserving swaps until its overlap with the original falls to the null overlap
    (within 3 standard deviations of a binomial count) or stops falling, then as many rounds again.
    Returns the new mask and what the chain did (rounds, swaps, overlap, null overlap)."""
    n_rows, n_cols = mask.shape
    original = mask.reshape(-1).astype(bool)
    present = original.copy()
    rows, cols = np.nonzero(mask)
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    null = null_overlap(mask)
    target = null + 3 * math.sqrt(max(null, 1.0))
    history, swaps, reached = [int(original.sum())], 0, None
    for k in range(1, MAX_ROUNDS + 1):
        swaps += _swap_round(rows, cols, present, n_cols, rng)
        history.append(int((present & original).sum()))
        stalled = k >= 2 * MIN_ROUNDS and min(history[-MIN_ROUNDS:]) >= min(history[:-MIN_ROUNDS])
        if reached is None and (history[-1] <= target or stalled):
            reached = k
        if reached is not None and k >= max(2 * reached, MIN_ROUNDS):
            break
    info = {"rounds": k, "rounds_to_null": reached, "swaps": swaps, "overlap": history[-1], "null_overlap": null,
            "alive": int(original.sum())}
    return present.reshape(n_rows, n_cols), info


def uniform_within_rows(counts: np.ndarray, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """A mask with ``counts[i]`` alive entries in row i at uniformly random columns."""
    keys = rng.random((counts.size, n_cols))
    ranks = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    return ranks < counts[:, None]


def low_rank_scores(t: np.ndarray, rank: int) -> tuple[np.ndarray, dict]:
    """The rank-``rank`` reconstruction of a ternary matrix from its truncated SVD with both factors rounded to
    fp16 (so the stored genome regenerates exactly this), and the relative Frobenius error to the ternary."""
    x = t.astype(np.float64)
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    r = min(rank, s.size)
    left = (u[:, :r] * s[:r]).astype(np.float16).astype(np.float64)
    right = vh[:r].astype(np.float16).astype(np.float64)
    recon = left @ right
    norm = float(np.linalg.norm(x))
    return recon, {"rank": r, "relative_error": float(np.linalg.norm(x - recon) / norm) if norm else 0.0}


def top_k_ternary(scores: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``k`` alive entries at the largest |scores| (ties: lowest flat index first), signed by the score
    (a zero score counts as positive, as everywhere in the toolkit)."""
    flat = scores.reshape(-1)
    chosen = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros(flat.size, dtype=np.int8)
    out[chosen] = np.where(flat[chosen] >= 0, 1, -1)
    return out.reshape(scores.shape)


def _per_tensor(conn: Connectome, seed: int, fn, control: str, **meta) -> Connectome:
    out, info = {}, {}
    for name, t in conn.ternary.items():
        new, details = fn(t.numpy(), _rng(seed, name))
        out[name] = torch.from_numpy(np.ascontiguousarray(new))
        if details:
            info[name] = details
    c = Connectome(out, dict(conn.meta))
    c.meta.update(control=control, control_seed=seed, **meta)
    if info:
        c.meta["control_info"] = info
    return c


def _positives(t: np.ndarray) -> int:
    return int((t > 0).sum())


def rewired(conn: Connectome, seed: int) -> Connectome:
    def fn(t, rng):
        mask, info = rewire_mask(t != 0, rng)
        return signs_at_ratio(mask, _positives(t), rng), info
    return _per_tensor(conn, seed, fn, "rewired")


def rows_kept(conn: Connectome, seed: int) -> Connectome:
    def fn(t, rng):
        mask = uniform_within_rows((t != 0).sum(1), t.shape[1], rng)
        return signs_at_ratio(mask, _positives(t), rng), None
    return _per_tensor(conn, seed, fn, "rows_kept")


def cols_kept(conn: Connectome, seed: int) -> Connectome:
    def fn(t, rng):
        mask = uniform_within_rows((t != 0).sum(0), t.shape[0], rng).T
        return signs_at_ratio(mask, _positives(t), rng), None
    return _per_tensor(conn, seed, fn, "cols_kept")


def sign_flipped(conn: Connectome) -> Connectome:
    c = Connectome({k: -t for k, t in conn.ternary.items()}, dict(conn.meta))
    c.meta.update(control="sign_flipped")
    return c


def low_rank(conn: Connectome, rank: int) -> Connectome:
    def fn(t, rng):
        scores, info = low_rank_scores(t, rank)
        return top_k_ternary(scores, int((t != 0).sum())), info
    return _per_tensor(conn, 0, fn, f"lowrank:{rank}", control_rank=rank)


def transplant(conn: Connectome, background: Connectome, keep: set[str]) -> Connectome:
    """The connectome's tensors named in ``keep``, ``background``'s (the random connectome) elsewhere."""
    c = Connectome({k: (t if k in keep else background.ternary[k]) for k, t in conn.ternary.items()}, dict(conn.meta))
    c.meta.update(control="transplant", transplanted=sorted(keep))
    return c
