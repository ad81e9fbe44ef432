"""The anatomy across things (docs/method.md §8): generations of one lineage, the trained magnitudes of
generation 0, the tokens' frequencies, and the structured code's choices (two lineages: anatomy.lineages).

Every function takes connectomes (connectome.ternary.Connectome), tensors, or the tensor tables of
analysis.anatomy.placement, and returns JSON-serialisable dicts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats as st

from .placement import LISTED, Shape, kind
from .stats import rank_correlation, rank_position, top_overlap

PERCENTILE_BINS = 20


def generation_step(before, after) -> dict:
    """Generation k's survivors against generation k-1's (two connectomes of one lineage): how many were
    survivors already (all of them, by construction: pruning only removes) and how many kept their sign. The
    latter is a count, not a test: generation k restarts its survivors at sign(w) * c, so they keep their
    sign unless training flips it, and a fair coin is no null for that."""
    rows = []
    for name, t in after.ternary.items():
        prev = before.ternary[name]
        alive = t != 0
        n, were = int(alive.sum()), int((alive & (prev != 0)).sum())
        same = int((alive & (t == prev)).sum())
        rows.append({"name": name, "alive": n, "alive_before": int((prev != 0).sum()), "were_alive": were,
                     "same_sign": same})
    n, were, same = (sum(r[k] for r in rows) for k in ("alive", "were_alive", "same_sign"))
    return {"alive": n, "were_alive": were, "same_sign": same, "same_sign_fraction": same / n if n else None,
            "tensors": rows}


def _magnitude_row(name: str, weights: torch.Tensor, first, last) -> dict:
    """One tensor: where the last generation's survivors ranked by |w| among generation 0's survivors."""
    w = weights.detach().double().abs().reshape(-1).numpy()
    s0 = (first != 0).reshape(-1).numpy()
    sf = (last != 0).reshape(-1).numpy()
    pool = w[s0]
    m, k = int(pool.size), int(sf.sum())
    # generation 0 kept its largest |w| (docs/method.md §3): no pruned weight may exceed a survivor
    construction_violations = int((w[~s0] > pool.min()).sum()) if m and (~s0).any() else 0
    ranks = st.rankdata(pool)  # 1 = the smallest surviving |w|; ties share their mean rank
    chosen = sf[s0]
    top = np.zeros(m, dtype=bool)
    top[np.argsort(pool, kind="stable")[m - k:]] = True
    percentiles = (ranks[chosen] - 0.5) / m
    trained_sign = np.where(weights.detach().reshape(-1).numpy() >= 0, 1, -1)[sf]
    agree = int((trained_sign == last.reshape(-1).numpy()[sf]).sum())
    return {"name": name, "numel": int(w.size), "generation0_survivors": m, "final_survivors": k,
            "outside_generation0": int((sf & ~s0).sum()), "construction_violations": construction_violations,
            "rank": rank_position(ranks[chosen], m), "top": top_overlap(chosen, top),
            "sign_agree": agree,
            "histogram": np.histogram(percentiles, bins=PERCENTILE_BINS, range=(0, 1))[0].tolist()}


def magnitude_ranks(weights: dict[str, torch.Tensor], first, last) -> dict:
    """How the final survivors' trained magnitudes looked at the end of generation 0 (``weights``, before its
    pruning): per tensor their mean percentile among generation 0's survivors (0.5 for a uniform draw) and
    how many are among the largest as many (chance: final / generation-0 survivors), with exact p; and how
    many kept the trained weight's sign (a count: generation 1 starts from that sign, so it is no coin toss).
    Generation 0's survivors are its largest |w| by construction, so the pool is those, not all weights."""
    rows = [_magnitude_row(n, weights[n], first.ternary[n], t) for n, t in last.ternary.items() if n in weights]
    chosen = sum(r["final_survivors"] for r in rows)
    in_top = sum(r["top"]["in_top"] for r in rows)
    hist = np.sum([r["histogram"] for r in rows], axis=0).tolist() if rows else []
    return {"tensors": rows, "final_survivors": chosen, "in_top": in_top, "in_top_fraction": in_top / chosen if chosen else None,
            "chance": sum(r["top"]["chance"] * r["final_survivors"] for r in rows) / chosen if chosen else None,
            "mean_percentile": sum(r["rank"]["mean_percentile"] * r["final_survivors"] for r in rows
                                   if r["rank"]["mean_percentile"] is not None) / chosen if chosen else None,
            "sign_agree": sum(r["sign_agree"] for r in rows), "histogram": hist,
            "construction_violations": sum(r["construction_violations"] for r in rows),
            "outside_generation0": sum(r["outside_generation0"] for r in rows)}


def _token_rows(alive: np.ndarray, freq: np.ndarray, order: np.ndarray, shape: Shape) -> list[dict]:
    return [{"id": int(i), "token": shape.label("token", int(i)), "alive": int(alive[i]), "frequency": int(freq[i])}
            for i in order[:LISTED]]


def token_table(tables: list[dict], frequency: np.ndarray | None, shape: Shape) -> dict:
    """Per token axis (the rows of ``wte`` and of ``lm_head``): alive count against the token's frequency in
    the large split (Spearman, over all ids and over the ids that occur), the most and least wired tokens and
    the tokens with no wiring left. ``unseen_by_id`` correlates the ids that never occur with their alive
    count: their rows get no gradient, so their weights tie, and pruning breaks ties by the lowest flat index
    (docs/method.md §3); a rising correlation is that tie rule, not learning."""
    out = {}
    for t in tables:
        if kind(t["name"]) not in ("wte", "lm_head"):
            continue
        alive = np.asarray(t["rows"]["alive"])
        entry = {"null_range": t["rows"]["null_range"], "expected": t["rows"]["expected"],
                 "dead": t["rows"]["dead"]["count"], "most": _token_rows(alive, np.zeros_like(alive), np.argsort(-alive, kind="stable"), shape)}
        if frequency is not None:
            freq = np.zeros(alive.size, dtype=np.int64)
            freq[:min(alive.size, frequency.size)] = frequency[:alive.size]
            seen = freq > 0
            entry.update(all=rank_correlation(alive, freq), seen=rank_correlation(alive[seen], freq[seen]),
                         ids_seen=int(seen.sum()), ids_unseen=int((~seen).sum()),
                         mean_alive_seen=float(alive[seen].mean()) if seen.any() else None,
                         mean_alive_unseen=float(alive[~seen].mean()) if (~seen).any() else None,
                         unseen_by_id=rank_correlation(np.flatnonzero(~seen), alive[~seen]),
                         most=_token_rows(alive, freq, np.lexsort((-freq, -alive)), shape),
                         least=_token_rows(alive, freq, np.lexsort((freq, alive)), shape),
                         dead_unseen=int(((alive == 0) & ~seen).sum()))
        out[t["kind"]] = entry
    return out


def _saving_bits(test: dict | None, units: int, length: int) -> float:
    """Bits a per-unit rate code saves on the mask over one rate (G / 2 ln 2) less its side information
    (every unit's count, log2(length + 1) bits each): exactly the structured codec's criterion."""
    g = test["g_statistic"] if test is not None else 0.0
    return g / (2 * math.log(2)) - units * math.log2(length + 1)


def codec_agreement(tables: list[dict], bits: dict | None) -> dict | None:
    """Per tensor: the structured code's choice and gain over the i.i.d. ANS code (from connectome_bits.json)
    beside each axis's degree dispersion and the dispersion at which per-unit rates start to pay
    (G > 2 units ln(length + 1), i.e. an index of about 2 ln(length + 1))."""
    if not bits or "tensors" not in bits:
        return None
    rows = []
    for t in tables:
        rec = bits["tensors"].get(t["name"])
        if rec is None:
            continue
        saving = {ax: _saving_bits(t[ax]["degree"], t[ax]["units"], t[ax]["length"]) for ax in ("rows", "cols")}
        best = max(saving, key=saving.get)
        rows.append({"name": t["name"], "context": rec["context"], "predicted": best if saving[best] > 0 else "iid",
                     "gain": 1 - rec["structured"] / rec["ans"] if rec["ans"] else 0.0, "saving_bits": saving,
                     "index": {ax: t[ax]["degree"]["index"] if t[ax]["degree"] else None for ax in ("rows", "cols")},
                     "over_dispersed": {ax: bool(t[ax]["degree"] and t[ax]["degree"]["over_dispersed"]) for ax in ("rows", "cols")},
                     "break_even_index": {ax: 2 * t[ax]["units"] * math.log(t[ax]["length"] + 1) / max(1, t[ax]["units"] - 1)
                                          for ax in ("rows", "cols")}})
    structured = [r for r in rows if r["context"] != "iid"]
    return {"tensors": rows, "agree": sum(r["predicted"] == r["context"] for r in rows), "n": len(rows),
            "structured": len(structured),
            "structured_over_dispersed": sum(r["over_dispersed"][r["context"]] for r in structured),
            "over_dispersed_iid": sum(1 for r in rows if r["context"] == "iid" and any(r["over_dispersed"].values())),
            "gain_vs_index": rank_correlation([r["gain"] for r in rows], [larger_index(r["index"]) for r in rows])}


def larger_index(index: dict) -> float:
    """The larger index of dispersion of a tensor's two axes (1, the null, for an axis with no test)."""
    return max(1.0 if v is None else v for v in index.values())
