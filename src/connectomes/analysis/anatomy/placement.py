"""The anatomy of one connectome (docs/method.md §8): per tensor the degrees and signs of every row and column,
per attention head and per layer, each against the random arm's construction (analysis.anatomy.stats).

A weight matrix is [out, in] (nn.Linear's layout), so each axis has a role: the rows of ``wte`` and
``lm_head`` are tokens (the same ids in every lineage, so they are *aligned* across lineages); the other axes
are residual channels, q/k/v units, attention or MLP units, which a second lineage may hold in any order
(permuting them consistently leaves the model's function unchanged), so across lineages only their
distributions compare, not unit i with unit i.

Families for Holm's correction (each at ``stats.ALPHA``): the degree dispersion tests of all tensor
axes; the sign coherence tests of all tensor axes; the degree of every row and column of every tensor; the
sign balance of every row and column; the alive count of every head block (q, k, v, o of each head of each
layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .stats import (
    ALPHA,
    DRAWS,
    block_pvalue,
    dispersion,
    holm_array,
    seed_for,
    sign_test,
    unit_pvalues,
    unit_range,
)

LISTED = 10  # heaviest, lightest and flagged units listed per axis (the JSON keeps every count)
_BLOCK = re.compile(r"transformer\.h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# what the rows and the columns of each matrix are
ROLES = {"wte": ("token", "residual channel (written)"),
         "attn.c_attn": ("q/k/v unit", "residual channel (read)"),
         "attn.c_proj": ("residual channel (written)", "attention unit (read)"),
         "mlp.c_fc": ("MLP unit", "residual channel (read)"),
         "mlp.c_proj": ("residual channel (written)", "MLP unit (read)"),
         "lm_head": ("token", "residual channel (read)")}


def kind(name: str) -> str:
    """``wte``, ``lm_head``, ``attn.c_attn``, ... (``other`` for a tensor this model does not name)."""
    m = _BLOCK.match(name)
    if m:
        return m.group(2)
    return {"transformer.wte.weight": "wte", "lm_head.weight": "lm_head"}.get(name, "other")


def layer_of(name: str) -> int | None:
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def short(name: str) -> str:
    """The name without ``transformer.`` and ``.weight``, for tables and axes."""
    return name.removeprefix("transformer.").removesuffix(".weight")


def model_order(name: str) -> tuple[int, int, int]:
    """Where a tensor sits from input to output: wte, then each block's matrices in forward order, lm_head."""
    k, layer = kind(name), layer_of(name)
    if layer is not None:
        return 1, layer, list(ROLES).index(k)
    return {"wte": (0, 0, 0), "lm_head": (2, 0, 0)}.get(k, (3, 0, 0))


def roles(name: str) -> tuple[str, str]:
    return ROLES.get(kind(name), ("row", "column"))


@dataclass(frozen=True)
class Shape:
    """What unit labels need of the model: width, head size, and the token names (None: ids)."""

    n_embd: int
    head_dim: int
    tokens: tuple[str, ...] | None = None

    @classmethod
    def of(cls, gcfg, tokens=None) -> "Shape":
        return cls(gcfg.n_embd, gcfg.head_dim, tuple(tokens) if tokens is not None else None)

    def label(self, role: str, i: int) -> str:
        if role == "token":
            return self.tokens[i] if self.tokens is not None and i < len(self.tokens) else f"id {i}"
        if role == "q/k/v unit":
            return f"{'qkv'[i // self.n_embd]} head {(i % self.n_embd) // self.head_dim} dim {i % self.head_dim}"
        if role == "attention unit (read)":
            return f"head {i // self.head_dim} dim {i % self.head_dim}"
        return f"{role.split(' (')[0]} {i}"


@dataclass
class _Axis:
    """One axis of one tensor while its flags are decided (unit p-values are corrected across all axes)."""

    tensor: str
    axis: str  # "rows" or "cols"
    role: str
    length: int  # weights per unit
    alive: np.ndarray
    positive: np.ndarray
    degree_p: np.ndarray
    sign_p: np.ndarray
    summary: dict


def _axis(name: str, t: torch.Tensor, axis: str, draws: int, seed: int) -> _Axis:
    dim = 1 if axis == "rows" else 0  # a row's count sums over the columns
    alive = (t != 0).sum(dim).numpy().astype(np.int64)
    positive = (t > 0).sum(dim).numpy().astype(np.int64)
    length = t.shape[dim]
    role = roles(name)[0 if axis == "rows" else 1]
    numel, total = t.numel(), int(alive.sum())
    summary = {"role": role, "aligned": role == "token", "units": int(alive.size), "length": length,
               "expected": total * length / numel if numel else 0.0, "null_range": unit_range(numel, total, length),
               "degree": dispersion(alive, np.full(alive.size, length), draws=draws, seed=seed_for(seed, name, axis, "degree")),
               "sign_coherence": dispersion(positive, alive, draws=draws, seed=seed_for(seed, name, axis, "sign")),
               "alive": alive.tolist(), "positive": positive.tolist()}
    return _Axis(name, axis, role, length, alive, positive, unit_pvalues(alive, np.full(alive.size, length)),
                 unit_pvalues(positive, alive), summary)


def _units(ax: _Axis, shape: Shape, order: np.ndarray, p_holm: np.ndarray) -> list[dict]:
    return [{"index": int(i), "label": shape.label(ax.role, int(i)), "alive": int(ax.alive[i]),
             "positive": int(ax.positive[i]), "p_holm": None if np.isnan(p_holm[i]) else float(p_holm[i])}
            for i in order[:LISTED]]


def _flag(axes: list[_Axis], shape: Shape) -> None:
    """Holm over every unit of every axis (degrees, and separately signs); list the extremes and the flags."""
    for key, field in (("degree", "degree_p"), ("sign", "sign_p")):
        adjusted = holm_array(np.concatenate([getattr(a, field) for a in axes])) if axes else np.zeros(0)
        start = 0
        for a in axes:
            p = adjusted[start:start + a.alive.size]
            start += a.alive.size
            flagged = np.flatnonzero(p < ALPHA)
            if key == "degree":
                deviation = a.alive - a.summary["expected"]
                a.summary["heaviest"] = _units(a, shape, np.argsort(-deviation, kind="stable"), p)
                a.summary["lightest"] = _units(a, shape, np.argsort(deviation, kind="stable"), p)
                dead = np.flatnonzero(a.alive == 0)
                a.summary["dead"] = {"count": int(dead.size), "units": [shape.label(a.role, int(i)) for i in dead[:LISTED * 5]]}
            flagged = flagged[np.argsort(p[flagged], kind="stable")]
            a.summary[f"{key}_flags"] = {"count": int(flagged.size), "heavy": int((a.alive[flagged] > a.summary["expected"]).sum())
                                         if key == "degree" else None,
                                         "indices": flagged.tolist(), "units": _units(a, shape, flagged, p)}


def _holm_tests(tensors: list[dict], key: str) -> None:
    """Holm over one dispersion test of every axis of every tensor (an axis with no test does not count)."""
    tests = [t[axis][key] for t in tensors for axis in ("rows", "cols") if t[axis][key] is not None]
    for test, p in zip(tests, holm_array([t["p"] for t in tests])):
        test["p_holm"] = float(p)
        test["over_dispersed"] = bool(p < ALPHA and test["index"] > 1)


def tensor_table(conn, shape: Shape, *, draws: int = DRAWS, seed: int = 0) -> list[dict]:
    """Every 2-D tensor's degrees and signs, rows and columns, with their tests and flags."""
    out, axes = [], []
    for name in sorted(conn.ternary, key=model_order):
        t = conn.ternary[name]
        if t.dim() != 2:
            continue
        alive, positive = int((t != 0).sum()), int((t > 0).sum())
        rows, cols = _axis(name, t, "rows", draws, seed), _axis(name, t, "cols", draws, seed)
        axes += [rows, cols]
        out.append({"name": name, "kind": kind(name), "layer": layer_of(name), "shape": list(t.shape), "alive": alive,
                    "density": alive / t.numel(), "positive": positive, "sign_balance": positive / alive if alive else None,
                    "sign_p": sign_test(positive, alive), "rows": rows.summary, "cols": cols.summary})
    _flag(axes, shape)
    for key in ("degree", "sign_coherence"):
        _holm_tests(out, key)
    return out


def _head_blocks(conn, layer: int, n_embd: int, head_dim: int):
    """(part, head, block) of one layer's attention: q, k and v rows of c_attn and the o columns of c_proj."""
    attn = conn.ternary.get(f"transformer.h.{layer}.attn.c_attn.weight")
    proj = conn.ternary.get(f"transformer.h.{layer}.attn.c_proj.weight")
    for h in range(n_embd // head_dim):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        if attn is not None:
            for j, part in enumerate("qkv"):
                yield part, h, attn[j * n_embd + cols.start:j * n_embd + cols.stop]
        if proj is not None:
            yield "o", h, proj[:, cols]


def head_table(conn, gcfg) -> list[dict]:
    """Density and sign balance of every head's q, k, v and o block against its tensor's (exact
    hypergeometric p; Holm over all blocks), with the null's 95% range of the block's alive count."""
    rows = []
    for layer in range(gcfg.n_layer):
        for part, h, block in _head_blocks(conn, layer, gcfg.n_embd, gcfg.head_dim):
            tensor = conn.ternary[f"transformer.h.{layer}.attn.{'c_proj' if part == 'o' else 'c_attn'}.weight"]
            numel, total, pos = tensor.numel(), int((tensor != 0).sum()), int((tensor > 0).sum())
            alive, positive = int((block != 0).sum()), int((block > 0).sum())
            expected = total * block.numel() / numel
            rows.append({"layer": layer, "head": h, "part": part, "size": block.numel(), "alive": alive,
                         "density": alive / block.numel(), "ratio": alive / expected if expected else None,
                         "null_range": unit_range(numel, total, block.numel()),
                         "p": block_pvalue(alive, block.numel(), numel, total),
                         "positive": positive, "sign_balance": positive / alive if alive else None,
                         "sign_p": block_pvalue(positive, alive, total, pos) if alive else None})
    for key in ("p", "sign_p"):
        for r, p in zip(rows, holm_array([np.nan if r[key] is None else r[key] for r in rows])):
            r[f"{key}_holm"] = None if np.isnan(p) else float(p)
    for r in rows:
        r["flag"] = bool(r["p_holm"] < ALPHA)
    return rows


def layer_table(conn) -> list[dict]:
    """Density and sign balance per layer (the embedding, each block, the head), the signs against a fair
    coin (exact binomial). Density has no test: the random arm matches every tensor's count, so a layer's is fixed."""
    groups: dict = {}
    for name, t in conn.ternary.items():
        key = layer_of(name)
        groups.setdefault(kind(name) if key is None else key, []).append(t)
    out = []
    for key, ts in groups.items():
        numel = sum(t.numel() for t in ts)
        alive, pos = sum(int((t != 0).sum()) for t in ts), sum(int((t > 0).sum()) for t in ts)
        out.append({"layer": key, "numel": numel, "alive": alive, "density": alive / numel, "positive": pos,
                    "sign_balance": pos / alive if alive else None, "sign_p": sign_test(pos, alive)})
    return out


def connectome_anatomy(conn, gcfg, *, tokens=None, draws: int = DRAWS, seed: int = 0) -> dict:
    """One connectome's tensors, heads and layers (the sections of anatomy.json that need no other file)."""
    tensors = tensor_table(conn, Shape.of(gcfg, tokens), draws=draws, seed=seed)
    total = sum(t["shape"][0] * t["shape"][1] for t in tensors)
    return {"generation": conn.meta.get("generation"), "numel": total, "density": sum(t["alive"] for t in tensors) / total,
            "tensors": tensors, "heads": head_table(conn, gcfg), "layers": layer_table(conn)}
