"""Two lineages' connectomes compared (docs/method.md §8): mask overlap and sign agreement against two nulls,
and whether their degree profiles correlate.

*Uniform* (the random arm's construction): one mask placed uniformly, so the shared count is hypergeometric
(exact p; chance Jaccard d / (2 - d)); shared signs independent, each lineage's at its own sign balance in the
tensor, so they agree at p_a p_b + (1 - p_a)(1 - p_b) (exact binomial; pooled over tensors, normal).

*Symmetry*: the model computes the same function after relabelling its residual channels (any permutation,
each channel's sign flipped or not: RMS norm has no gain), its MLP units (any permutation) or its heads (one
permutation of whole heads, q, k and v alike; RoPE fixes the dimensions inside a head), so the labels a
lineage ends up with carry no meaning unless something ties them to the index. This null relabels lineage b
at random within that group, the same relabelling for every tensor of one draw, keeping everything else
about b: its degree profiles, its sign coherence, its tokens. Only token ids keep their identity. Overlap or
agreement beyond it is wiring the two lineages share *unit for unit*; the uniform null alone would also count
structure each has separately (a shared token profile, sign-coherent channels).
"""

from __future__ import annotations

import numpy as np

from .placement import kind, layer_of
from .stats import ALPHA, DRAWS, overlap, pooled_agreement, rank_correlation, seed_for, sign_agreement

# how each matrix's rows and columns may be relabelled without changing the model
SYMMETRY = {"wte": ("fixed", "residual"), "attn.c_attn": ("heads", "residual"), "attn.c_proj": ("residual", "heads"),
            "mlp.c_fc": ("units", "residual"), "mlp.c_proj": ("residual", "units"), "lm_head": ("fixed", "residual")}


def _relabelling(rng: np.random.Generator, gcfg) -> dict:
    """One draw of the symmetry group: a signed permutation of the residual channels, and per layer a
    permutation of its heads and one of its MLP units."""
    out = {"residual": (rng.permutation(gcfg.n_embd), rng.choice(np.array([-1, 1], dtype=np.int8), gcfg.n_embd))}
    for layer in range(gcfg.n_layer):
        out["heads", layer] = rng.permutation(gcfg.n_head)
        out["units", layer] = rng.permutation(4 * gcfg.n_embd)
    return out


def _axis_index(group: str, layer: int | None, size: int, draw: dict, gcfg) -> tuple[np.ndarray, np.ndarray | None]:
    """(new order of an axis's units, their sign flips or None) under one draw."""
    if group == "residual":
        return draw["residual"]
    if group == "units":
        return draw["units", layer], None
    if group == "heads":  # every q/k/v part (or the o columns) moves its heads alike, dimensions in place
        hd, heads = gcfg.head_dim, draw["heads", layer]
        parts = np.arange(size // gcfg.n_embd)[:, None, None] * gcfg.n_embd
        return (parts + heads[None, :, None] * hd + np.arange(hd)[None, None, :]).reshape(-1), None
    return np.arange(size), None


def _relabelled(b: np.ndarray, name: str, draw: dict, gcfg) -> np.ndarray:
    rows, cols = SYMMETRY[kind(name)]
    layer = layer_of(name)
    ri, rs = _axis_index(rows, layer, b.shape[0], draw, gcfg)
    ci, cs = _axis_index(cols, layer, b.shape[1], draw, gcfg)
    out = b[ri][:, ci]
    if rs is not None:
        out = out * rs[:, None]
    if cs is not None:
        out = out * cs[None, :]
    return out


def symmetry_null(a, b, gcfg, *, draws: int = DRAWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Per tensor with a known symmetry, ``draws`` x (shared survivors, of them agreeing in sign) of a against
    b relabelled (the same draw for every tensor); key "total" pools the tensors."""
    names = [n for n in a.ternary if kind(n) in SYMMETRY]
    ta = {n: a.ternary[n].numpy() for n in names}
    tb = {n: b.ternary[n].numpy() for n in names}
    out = {n: np.zeros((draws, 2), dtype=np.int64) for n in names}
    rng = np.random.default_rng(seed_for(seed, "lineages"))
    for k in range(draws):
        draw = _relabelling(rng, gcfg)
        for n in names:
            x, y = ta[n], _relabelled(tb[n], n, draw, gcfg)
            alive = x != 0
            out[n][k] = np.count_nonzero(alive & (y != 0)), np.count_nonzero(alive & (x == y))
    out["total"] = sum((out[n] for n in names), np.zeros((draws, 2), dtype=np.int64))
    return out


def _beyond_symmetry(shared: int, agree: int, null: np.ndarray) -> dict:
    """The observed overlap and sign agreement against the symmetry null's draws (one-sided: more overlap;
    two-sided for agreement); p = (1 + draws at least as extreme) / (draws + 1)."""
    n = null.shape[0]
    frac = null[:, 1] / np.maximum(null[:, 0], 1)
    obs = agree / shared if shared else 0.0
    more = (1 + np.sum(frac >= obs - 1e-12)) / (n + 1)
    less = (1 + np.sum(frac <= obs + 1e-12)) / (n + 1)
    return {"shared_mean": float(null[:, 0].mean()), "shared_range": [float(v) for v in np.quantile(null[:, 0], [0.025, 0.975])],
            "p_more": float((1 + np.sum(null[:, 0] >= shared)) / (n + 1)),
            "agree_mean": float(frac.mean()), "agree_range": [float(v) for v in np.quantile(frac, [0.025, 0.975])],
            "agree_p": float(min(1.0, 2 * min(more, less))), "draws": n}


def _profiles(ta: dict, tb: dict) -> dict:
    """Spearman of the two lineages' alive counts unit by unit, per axis, with what the axis's index means."""
    sym = SYMMETRY.get(ta["kind"], ("fixed", "fixed"))
    return {axis: {"identity": group, "profile": rank_correlation(ta[axis]["alive"], tb[axis]["alive"])}
            for axis, group in zip(("rows", "cols"), sym)}


def _positive(t: np.ndarray) -> float:
    """A tensor's sign balance: the positive fraction of its survivors (0.5 with none)."""
    alive = np.count_nonzero(t)
    return np.count_nonzero(t > 0) / alive if alive else 0.5


def lineage_pair(a, b, tables_a: list[dict], tables_b: list[dict], gcfg, *, draws: int = DRAWS, seed: int = 0) -> dict:
    """Two lineages' connectomes at one generation, per tensor and pooled: Jaccard overlap of the masks and sign
    agreement of the shared survivors against the uniform null (signs at each lineage's own balance) and the
    symmetry null, and the degree profiles' correlation per axis (unit by unit: it means the same unit only
    where the axis is tokens)."""
    tb = {t["name"]: t for t in tables_b}
    null = symmetry_null(a, b, gcfg, draws=draws, seed=seed)
    rows = []
    for ta in tables_a:
        name = ta["name"]
        ma, mb = (a.ternary[name] != 0).numpy(), (b.ternary[name] != 0).numpy()
        shared = ma & mb
        ov = overlap(ma, mb)
        xa, xb = a.ternary[name].numpy(), b.ternary[name].numpy()
        signs = sign_agreement(xa[shared], xb[shared], _positive(xa), _positive(xb))
        sym = _beyond_symmetry(ov["shared"], signs["agree"], null[name]) if name in null else None
        rows.append({"name": name, "kind": ta["kind"], "density": ta["density"], **ov, "signs": signs, "symmetry": sym,
                     **_profiles(ta, tb[name])})
    shared, chance = sum(r["shared"] for r in rows), sum(r["chance_shared"] for r in rows)
    signs = pooled_agreement([r["signs"] for r in rows])
    agree = signs["agree"]
    return {"tensors": rows, "shared": shared, "chance_shared": chance, "shared_over_chance": shared / chance if chance else None,
            "jaccard": shared / sum(r["union"] for r in rows), "sign_agree": agree,
            "sign_agree_fraction": signs["fraction"], "sign_null": signs["null"], "sign_z": signs["z"], "sign_p": signs["p"],
            "symmetry": _beyond_symmetry(shared, agree, null["total"]) if len(null) > 1 else None,
            "over_uniform": sum(1 for r in rows if r["p_more"] <= ALPHA / len(rows)),
            "over_symmetry": sum(1 for r in rows if r["symmetry"] and r["symmetry"]["p_more"] <= ALPHA / len(rows)),
            "bonferroni": len(rows)}
