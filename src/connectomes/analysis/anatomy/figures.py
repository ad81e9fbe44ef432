"""The anatomy's figures (docs/method.md §8), each drawn from anatomy.json's content with its null beside it:
degree dispersion per tensor and the structured code's gain, degree histograms against the exact null,
token survival against frequency, a per-head heat map, generation 0's magnitude ranks, lineage overlap. Each is
a ``Figure`` (analysis.figures), drawn when anatomy.json is written (its records kept there) and embedded by the
report from those records."""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import stats as st

from ..figures import Figure, panel_grid, plt_module
from .compare import larger_index
from .placement import short

HISTOGRAMS = 6  # the most over-dispersed tensor axes drawn against their null


def _slug(label: str) -> str:
    return "" if label == "run" else "_" + label.replace(" ", "_")


def draw_dispersion(lin: dict):
    """Index of dispersion of every tensor's row and column degrees (log scale) with the null's 95% range,
    and the structured code's gain against the larger index."""
    plt = plt_module()
    tensors = lin["tensors"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9, 0.5 * len(tensors) + 5), 4.2), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(tensors))
    for off, axis, marker in ((-0.15, "rows", "o"), (0.15, "cols", "s")):
        tests = [t[axis]["degree"] for t in tensors]
        xs = [i + off for i, d in zip(x, tests) if d]
        ax1.vlines(xs, [d["null_index"]["lo"] for d in tests if d], [d["null_index"]["hi"] for d in tests if d],
                   color="gray", lw=4, alpha=0.5)
        ax1.scatter(xs, [d["index"] for d in tests if d], marker=marker, zorder=3, label=f"{axis} (grey: null 95%)")
    ax1.axhline(1, ls=":", color="k", lw=1)
    ax1.set_yscale("log")
    ax1.set_xticks(x, [short(t["name"]) for t in tensors], rotation=90, fontsize=7)
    ax1.set_xlabel("weight tensor")
    ax1.set_ylabel("index of dispersion of alive counts (1 = null)")
    ax1.set_title("Degrees per row and column against uniform placement")
    ax1.legend(fontsize=8)
    codec = lin.get("codec") or {"tensors": []}
    for r in codec["tensors"]:
        index, rates = larger_index(r["index"]), r["context"] != "iid"
        ax2.scatter(index, 100 * r["gain"], color="C1" if rates else "C0",
                    label="per-row/column rates chosen" if rates else "i.i.d. code kept")
        if rates:  # the i.i.d. ones sit on top of each other at no gain: their names would overprint
            ax2.annotate(short(r["name"]), (index, 100 * r["gain"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax2.set_xscale("log")
    ax2.set_xlabel("larger index of dispersion (rows, cols)")
    ax2.set_ylabel("structured code's gain over i.i.d. ANS (%)")
    handles = dict(zip(*reversed(ax2.get_legend_handles_labels())))  # one entry per label
    if handles:
        ax2.legend(handles.values(), handles.keys(), fontsize=7)
    ax2.set_title("Codec: the structured code's choice per tensor", fontsize=9)
    return fig


def draw_histograms(lin: dict):
    """Alive counts per unit of the most over-dispersed tensor axes, against the exact null (hypergeometric)."""
    axes = [(t, a) for t in lin["tensors"] for a in ("rows", "cols") if t[a]["degree"]]
    axes = sorted(axes, key=lambda ta: -ta[0][ta[1]]["degree"]["index"])[:HISTOGRAMS]
    if not axes:
        return None
    fig, grid = panel_grid(len(axes), 3.2, 3.0, cols=3)
    for ax, (t, a) in zip(grid, axes):
        s = t[a]
        counts = np.asarray(s["alive"])
        k = np.arange(s["length"] + 1)
        ax.hist(counts, bins=np.arange(-0.5, s["length"] + 1.5, max(1, s["length"] // 40)), color="C0", alpha=0.7)
        numel = t["shape"][0] * t["shape"][1]
        pmf = st.hypergeom.pmf(k, numel, t["alive"], s["length"]) * counts.size * max(1, s["length"] // 40)
        ax.plot(k, pmf, color="k", lw=1, label="null")
        ax.set_title(f"{short(t['name'])} {a}\nindex {s['degree']['index']:.2f}", fontsize=8)
        ax.set_xlabel(f"alive weights per {s['role']}", fontsize=7)
        ax.set_ylabel("count", fontsize=7)
    grid[0].legend(fontsize=7)
    return fig


def draw_tokens(lin: dict, frequency):
    """Alive count per token (rows of wte and lm_head) against its count in the large split."""
    tables = {t["kind"]: t for t in lin["tensors"] if t["kind"] in ("wte", "lm_head")}
    if frequency is None or not tables:
        return None
    plt = plt_module()
    fig, grid = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4), squeeze=False)
    for ax, (k, t) in zip(grid[0], tables.items()):
        alive = np.asarray(t["rows"]["alive"])
        freq = np.zeros(alive.size)
        freq[:min(alive.size, len(frequency))] = frequency[:alive.size]
        points = ax.scatter(freq + 1, alive, s=6, alpha=0.7, c=np.arange(alive.size), cmap="viridis")
        lo, hi = t["rows"]["null_range"]
        ax.axhspan(lo, hi, color="gray", alpha=0.3, label="null 95% range")
        ax.set_xscale("log")
        rho = lin["tokens"].get(k, {}).get("all")
        ax.set_title(f"{k}: alive per token" + (f", Spearman {rho['rho']:.2f}" if rho else ""), fontsize=9)
        ax.set_xlabel("occurrences in the large split + 1")
        ax.set_ylabel(f"alive of {t['rows']['length']}")
        ax.legend(fontsize=7)
    fig.colorbar(points, ax=grid[0][-1], label="token id (ids that never occur sit at 1)")
    return fig


def draw_heads(lin: dict):
    """Each head's q, k, v and o block: density over its tensor's (1 = null), flagged blocks starred."""
    heads = lin["heads"]
    if not heads:
        return None
    layers = 1 + max(h["layer"] for h in heads)
    n_head = 1 + max(h["head"] for h in heads)
    grid = np.full((layers, 4 * n_head), np.nan)
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * 4 * n_head + 2), max(2.5, 0.45 * layers + 1.5)))
    for h in heads:
        col = "qkvo".index(h["part"]) * n_head + h["head"]
        grid[h["layer"], col] = h["ratio"] if h["ratio"] is not None else np.nan
        if h["flag"]:
            ax.text(col, h["layer"], "*", ha="center", va="center", fontsize=10)
    span = max(0.05, float(np.nanmax(np.abs(np.log2(grid)))) if np.isfinite(grid).any() else 0.05)
    im = ax.imshow(np.log2(grid), cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    ax.set_xticks(range(4 * n_head), [f"{p}{h}" for p in "qkvo" for h in range(n_head)], fontsize=6, rotation=90)
    ax.set_yticks(range(layers), [f"layer {i}" for i in range(layers)], fontsize=7)
    fig.colorbar(im, ax=ax, label="log2 density / tensor density")
    ax.set_xlabel("block: part (q, k, v, o) and head")
    ax.set_ylabel("layer")
    ax.set_title("Heads: density of each q, k, v, o block (* = outside the null, Holm)", fontsize=9)
    return fig


def draw_magnitudes(lin: dict):
    """Where the final survivors' |w| sat among generation 0's survivors, against uniform."""
    mag = lin.get("magnitudes") or {}
    hist = mag.get("histogram")
    if not hist:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    edges = np.linspace(0, 1, len(hist) + 1)
    ax.bar(edges[:-1], np.asarray(hist) / sum(hist) * len(hist), width=1 / len(hist), align="edge", alpha=0.7)
    ax.axhline(1, ls="--", color="k", lw=1, label="null (uniform)")
    ax.set_xlabel("percentile of |w| at the end of generation 0, among its survivors")
    ax.set_ylabel("density of final survivors")
    ax.set_title(f"{mag['in_top_fraction']:.2f} of final survivors among the largest (chance {mag['chance']:.2f})", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def draw_pair(pair: dict):
    """Jaccard overlap of two lineages per tensor against both nulls, and sign agreement of shared survivors."""
    plt = plt_module()
    rows = pair["tensors"]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(7, 0.45 * len(rows) + 3), 6), sharex=True)
    ax1.bar(x, [r["jaccard"] for r in rows], color="C0", label="observed")
    ax1.vlines(x - 0.2, [r["null_jaccard"][0] for r in rows], [r["null_jaccard"][1] for r in rows], color="k", lw=3,
               label="uniform null 95% (d / (2 - d))")
    sym = [(i, r) for i, r in zip(x, rows) if r["symmetry"]]
    ax1.vlines([i + 0.2 for i, _ in sym], [_jaccard(r, r["symmetry"]["shared_range"][0]) for _, r in sym],
               [_jaccard(r, r["symmetry"]["shared_range"][1]) for _, r in sym], color="C3", lw=3,
               label="symmetry null 95% (relabelled)")
    ax1.set_ylabel("Jaccard of masks")
    ax1.set_title(f"{pair['a']} vs {pair['b']}: overlap against chance", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.bar(x, [r["signs"]["fraction"] or 0 for r in rows], color="C2")
    ax2.vlines([i + 0.2 for i, _ in sym], [r["symmetry"]["agree_range"][0] for _, r in sym],
               [r["symmetry"]["agree_range"][1] for _, r in sym], color="C3", lw=3)
    ax2.hlines([r["signs"]["null"] for r in rows], x - 0.4, x + 0.4, ls="--", color="k", lw=1,
               label="independent signs at each lineage's balance")
    ax2.legend(fontsize=7)
    ax2.set_ylabel("sign agreement (shared)")
    ax2.set_ylim(0, 1)
    ax2.set_xticks(x, [short(r["name"]) for r in rows], rotation=90, fontsize=7)
    return fig


def _jaccard(row: dict, shared: float) -> float:
    union = row["alive_a"] + row["alive_b"] - shared
    return shared / union if union else 0.0


def lineage_figures(label: str, lin: dict, frequency) -> list[Figure]:
    """One lineage's figures."""
    s, who = _slug(label), "" if label == "run" else f" ({label})"
    return [
        Figure(f"degrees{s}", f"Degree dispersion per tensor axis against the null, and the structured code's gain{who}.",
               partial(draw_dispersion, lin)),
        Figure(f"degree_histograms{s}", f"Alive counts per unit of the most over-dispersed axes against the exact null{who}.",
               partial(draw_histograms, lin)),
        Figure(f"tokens{s}", f"Token survival against frequency in the large split{who}.", partial(draw_tokens, lin, frequency)),
        Figure(f"heads{s}", f"Per-head density of q, k, v and o blocks against their tensor's{who}.", partial(draw_heads, lin)),
        Figure(f"magnitudes{s}", f"Generation 0 magnitude percentiles of the final survivors{who}.", partial(draw_magnitudes, lin))]


def anatomy_figures(result: dict) -> list[Figure]:
    """Every figure of an anatomy result: each lineage's, then each pair's."""
    figs = [f for label, lin in result["lineages"].items() for f in lineage_figures(label, lin, result.get("frequency"))]
    return figs + [Figure(f"lineages_{p['a']}_{p['b']}".replace(" ", "_"),
                          f"Mask overlap and sign agreement, {p['a']} vs {p['b']}.", partial(draw_pair, p))
                   for p in result["pairs"]]
