"""The controls section's statistics (analysis.ablations) on planted results where the answer is known: the
benefit sits in the MLP tensors, so transplanting them keeps all of it and transplanting attention none."""

from __future__ import annotations

import numpy as np
import pytest

from connectomes.analysis.ablations import control_rows, share_of_benefit, table_lines
from connectomes.pipeline.sweep import Unit

LINEAGES, SEEDS = (0, 1, 2), (0, 1)
# lineage l's connectome is 0.3 + 0.02 l below random; seed s adds 0.01 s to every arm (paired data)
BASE = {"random": 3.0, "connectome": 2.7, "transplant:mlp": 2.7, "transplant:attention": 3.0, "rewired": 2.85}


def rows(noise: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for arm, loss in BASE.items():
        for lin in LINEAGES:
            for seed in SEEDS:
                lift = 0.02 * lin if arm in ("connectome", "transplant:mlp") else 0.01 * lin if arm == "rewired" else 0
                out.append({"unit": Unit(arm, seed, lin, None, 16384), "best": loss - lift + 0.01 * seed + noise * rng.normal()})
    for seed in SEEDS:
        out.append({"unit": Unit("dense", seed, None, None, 16384), "best": 2.9 + 0.01 * seed})
    return out


def test_the_planted_benefit_is_found_in_the_group_that_carries_it():
    recs = {r["arm"]: r for r in control_rows(rows(), {}, "best", [*BASE, "dense"])}
    assert recs["transplant:mlp"]["share"]["share"] == pytest.approx(1.0)
    assert recs["transplant:attention"]["share"]["share"] == pytest.approx(0.0)
    # rewired keeps half of lineage l's advantage exactly: (0.15 + 0.01 l) / (0.3 + 0.02 l)
    assert recs["rewired"]["share"]["share"] == pytest.approx(0.5)
    # differences paired by lineage and seed, the interval over the 3 lineage means
    d = recs["transplant:attention"]["vs_connectome"]
    assert d["diff"] == pytest.approx(0.32) and d["lineages"] == 3 and d["pairs"] == 6
    assert d["ci"][0] < 0.32 < d["ci"][1]
    # dense has no lineage: paired with every lineage by seed
    dd = recs["dense"]["vs_connectome"]
    assert dd["diff"] == pytest.approx(np.mean([2.9 - (2.7 - 0.02 * lin) for lin in LINEAGES]))
    assert recs["dense"]["lineages"] == 1 and recs["connectome"]["lineages"] == 3


def test_share_with_noise_has_an_interval_over_lineages_and_the_table_prints_every_arm():
    r = rows(noise=0.01)
    by = {a: [x for x in r if x["unit"].arm == a] for a in BASE}
    s = share_of_benefit(by["transplant:mlp"], by["connectome"], by["random"], "best")
    assert s["lineages"] == 3 and s["ci"][0] < s["share"] < s["ci"][1]
    lines = table_lines(control_rows(r, {"connectome": 1000.0, "random": 10.0}, "best", [*BASE, "dense"]), "best")
    assert len(lines) == 2 + len(BASE) + 1
    assert "| Transplant[mlp] | the connectome in the mlp tensors | — |" in lines[4]


def test_two_arms_that_no_lineage_changes_are_compared_over_seeds():
    r = rows()
    recs = {x["arm"]: x for x in control_rows(r, {}, "best", [*BASE, "dense"])}
    d = recs["dense"]["vs_random"]  # random here is the same in every lineage, as when lineages share counts
    assert d["lineages"] == 1 and d["pairs"] == 2 and "one lineage" in d["over"]
    assert d["diff"] == pytest.approx(-0.1)
