"""Connectome anatomy (issue 22) on synthetic masks with planted structure: one heavy row, a dead head, two
lineages sharing half their survivors are found exactly; uniform masks show none (p-values uniform across
seeds, no false flag beyond the stated level); the symmetry null's relabellings leave the model's function
unchanged; generations, magnitudes, tokens and the codec's choices."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as st

from connectomes.analysis.anatomy import stats as ast
from connectomes.analysis.anatomy.placement import connectome_anatomy, model_order, tensor_table, Shape
from connectomes.analysis.anatomy.compare import codec_agreement, generation_step, magnitude_ranks, token_table
from connectomes.analysis.anatomy.lineages import SYMMETRY, _relabelled, _relabelling, lineage_pair
from connectomes.analysis.stats import holm
from connectomes.connectome.codec import codec_bits
from connectomes.connectome.ternary import Connectome
from connectomes.model.gpt import GPT, GPTConfig

GCFG = GPTConfig(vocab_size=64, n_layer=2, n_head=16, n_embd=64, block_size=16)  # heads of 4 dimensions
D = 0.262
SEEDS = 30


def shapes(gcfg=GCFG) -> dict[str, tuple]:
    with torch.device("meta"):
        return {n: tuple(p.shape) for n, p in GPT(gcfg).named_parameters() if p.dim() == 2}


def place(shape, k: int, rng, allowed: np.ndarray | None = None) -> torch.Tensor:
    """k alive weights at uniform positions (among ``allowed``), fair-coin signs."""
    n = math.prod(shape)
    pool = np.arange(n) if allowed is None else np.flatnonzero(allowed.reshape(-1))
    flat = np.zeros(n, dtype=np.int8)
    flat[rng.choice(pool, size=k, replace=False)] = rng.choice(np.array([-1, 1], dtype=np.int8), size=k)
    return torch.from_numpy(flat.reshape(shape))


def uniform(seed: int, gcfg=GCFG) -> Connectome:
    rng = np.random.default_rng(seed)
    return Connectome({n: place(s, round(D * math.prod(s)), rng) for n, s in shapes(gcfg).items()})


def flags(a: dict) -> list[tuple]:
    """(tensor, axis, unit) of every flagged degree."""
    return [(t["name"], ax, i) for t in a["tensors"] for ax in ("rows", "cols") for i in t[ax]["degree_flags"]["indices"]]


# ---------------------------------------------------------------- statistics


def test_holm_array_matches_analysis_stats_holm():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 40).tolist() + [None, 0.5, 0.5]
    want = [np.nan if x is None else x for x in holm(p)]
    np.testing.assert_allclose(ast.holm_array([np.nan if x is None else x for x in p]), want, rtol=1e-12)


def test_unit_pvalues_and_ranges_are_the_exact_hypergeometric_tails():
    x, n = np.array([0, 3, 5, 9, 12, 0]), np.array([20, 20, 20, 20, 20, 0])  # 29 successes in 100 slots
    want = np.minimum(1, 2 * np.minimum(st.hypergeom.cdf(x, 100, 29, 20), st.hypergeom.sf(x - 1, 100, 29, 20)))
    np.testing.assert_allclose(ast.unit_pvalues(x, n)[:5], want[:5], rtol=1e-10)
    assert np.isnan(ast.unit_pvalues(x, n)[5])
    assert ast.block_pvalue(0, 64, 100_000, 26_000) == pytest.approx(2 * st.hypergeom.cdf(0, 100_000, 26_000, 64), rel=1e-10)
    for slots, total, size in ((1000, 262, 64), (100, 50, 10), (50, 1, 7)):
        assert ast.unit_range(slots, total, size) == st.hypergeom.ppf([0.025, 0.975], slots, total, size).tolist()


@pytest.mark.parametrize("slots,total,size", [(100, 29, 20), (50, 1, 7), (4096, 1073, 64), (38_633_472, 10_128_000, 768)])
def test_hypergeometric_pmf_agrees_with_scipy(slots, total, size):
    k = np.arange(size + 1)
    want = st.hypergeom.pmf(k, slots, total, size)
    got = ast._hypergeom_pmf(k, slots, total, size)
    assert np.all(got[want == 0] < 1e-300)  # scipy flushes what log-space keeps as denormals
    np.testing.assert_allclose(got[want > 1e-300], want[want > 1e-300], rtol=1e-6)


def test_dispersion_uses_chi2_where_cells_are_large_and_draws_where_small():
    big = ast.dispersion([10, 30, 20, 20], [40, 40, 40, 40], draws=199)
    assert big["method"] == "chi2" and big["p"] == pytest.approx(st.chi2.sf(big["chi2"], 3))
    assert big["index"] == pytest.approx(big["chi2"] / 3)
    small = ast.dispersion([0, 3, 1, 0], [3, 3, 3, 3], draws=199, seed=1)
    assert small["method"].startswith("Monte Carlo") and small["p"] == small["p_monte_carlo"]
    # sign units too small for chi^2 are left out of it, the others tested
    mixed = ast.dispersion([1, 15, 30, 20], [2, 30, 60, 40], draws=99)
    assert mixed["method"] == "chi2" and mixed["units"] == 3 and mixed["units_left_out"] == 1
    assert ast.dispersion([0, 0], [5, 5]) is None and ast.dispersion([5], [9]) is None


def test_g_statistic_is_twice_ln2_the_bits_per_unit_rates_save():
    x, n = np.array([3, 30, 12]), np.array([40, 40, 40])
    d = x.sum() / n.sum()

    def h(p):
        return 0.0 if p in (0, 1) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))

    saved = n.sum() * h(d) - sum(L * h(k / L) for k, L in zip(x, n))
    assert ast.dispersion(x, n, draws=9)["g_statistic"] == pytest.approx(2 * math.log(2) * saved)


# ---------------------------------------------------------------- one connectome


@pytest.fixture(scope="module")
def uniform_anatomies():
    return [connectome_anatomy(uniform(s), GCFG, draws=99, seed=s) for s in range(SEEDS)]


def test_uniform_masks_give_uniform_p_values(uniform_anatomies):
    for key in ("degree", "sign_coherence"):
        p = [t[ax][key]["p"] for a in uniform_anatomies for t in a["tensors"] for ax in ("rows", "cols")]
        assert len(p) == SEEDS * 20
        assert st.kstest(p, "uniform").pvalue > 0.01, key
    heads = [h["p"] for a in uniform_anatomies for h in a["heads"]]
    assert np.mean(heads) > 0.4  # discrete exact tests are conservative: mean at or above 0.5, never small


def test_uniform_masks_raise_no_more_false_flags_than_the_level(uniform_anatomies):
    """Each family is Holm-corrected at 0.05, so at most 5% of seeds may show any flag in it; 4 of 30 or more would
    happen with probability 0.06 even at exactly 5%, and these exact tests are conservative."""
    families = {
        "degree units": [bool(flags(a)) for a in uniform_anatomies],
        "sign units": [any(t[ax]["sign_flags"]["count"] for t in a["tensors"] for ax in ("rows", "cols")) for a in uniform_anatomies],
        "heads": [any(h["flag"] for h in a["heads"]) for a in uniform_anatomies],
        "dispersion": [any(t[ax]["degree"]["over_dispersed"] for t in a["tensors"] for ax in ("rows", "cols"))
                       for a in uniform_anatomies],
    }
    for name, any_flag in families.items():
        assert sum(any_flag) <= 3, (name, sum(any_flag))


def test_one_heavy_row_is_the_only_structure_found():
    rng = np.random.default_rng(7)
    conn = uniform(7)
    name = "transformer.h.1.mlp.c_fc.weight"  # 256 MLP units x 64 residual channels
    t = conn.ternary[name].numpy().copy()
    k = int((t != 0).sum())
    heavy = np.zeros(t.shape, dtype=bool)
    heavy[37, :58] = True  # 58 of 64 alive against 16.8 expected
    rest = place(t.shape, k - 58, rng, allowed=~heavy).numpy()
    rest[37, :58] = rng.choice(np.array([-1, 1], dtype=np.int8), 58)
    conn.ternary[name] = torch.from_numpy(rest)
    a = connectome_anatomy(conn, GCFG, draws=199)
    assert flags(a) == [(name, "rows", 37)]
    table = {t["name"]: t for t in a["tensors"]}
    assert table[name]["rows"]["heaviest"][0]["index"] == 37 and table[name]["rows"]["degree"]["over_dispersed"]
    over = [(t["name"], ax) for t in a["tensors"] for ax in ("rows", "cols") if t[ax]["degree"]["over_dispersed"]]
    assert over == [(name, "rows")]


def test_a_dead_head_is_found_exactly():
    rng = np.random.default_rng(3)
    conn = uniform(3)
    C, hd, h = GCFG.n_embd, GCFG.head_dim, 5
    dead_rows = [p * C + h * hd + j for p in range(3) for j in range(hd)]
    for name, dead in (("transformer.h.0.attn.c_attn.weight", (dead_rows, slice(None))),
                       ("transformer.h.0.attn.c_proj.weight", (slice(None), slice(h * hd, (h + 1) * hd)))):
        shape = conn.ternary[name].shape
        allowed = np.ones(shape, dtype=bool)
        allowed[dead] = False
        conn.ternary[name] = place(shape, round(D * allowed.sum()), rng, allowed=allowed)  # the rest at density D
    a = connectome_anatomy(conn, GCFG, draws=199)
    assert sorted((x["layer"], x["head"], x["part"]) for x in a["heads"] if x["flag"]) == [(0, h, p) for p in "koqv"]
    assert all(x["alive"] == 0 for x in a["heads"] if x["flag"])
    want = [("transformer.h.0.attn.c_attn.weight", "rows", r) for r in dead_rows] + \
           [("transformer.h.0.attn.c_proj.weight", "cols", h * hd + j) for j in range(hd)]
    assert sorted(flags(a)) == sorted(want)
    labels = [u["label"] for t in a["tensors"] for u in t["rows"]["degree_flags"]["units"]]
    assert "q head 5 dim 0" in labels and "k head 5 dim 3" in labels


def test_tensors_are_listed_from_input_to_output():
    names = [t["name"] for t in tensor_table(uniform(0), Shape.of(GCFG), draws=9)]
    assert names == sorted(shapes(), key=model_order)
    assert names[0] == "transformer.wte.weight" and names[-1] == "lm_head.weight"
    assert names[1:5] == [f"transformer.h.0.{k}.weight" for k in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


# ---------------------------------------------------------------- lineages


def share_half(a: Connectome, seed: int, same_signs: bool) -> Connectome:
    """A second lineage holding half of a's survivors per tensor (its signs or fresh ones) and half elsewhere."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in a.ternary.items():
        flat = t.numpy().reshape(-1)
        alive = np.flatnonzero(flat)
        k = alive.size
        b = np.zeros_like(flat)
        kept = rng.choice(alive, size=k // 2, replace=False)
        b[kept] = flat[kept] if same_signs else rng.choice(np.array([-1, 1], dtype=np.int8), kept.size)
        new = rng.choice(np.flatnonzero(flat == 0), size=k - k // 2, replace=False)
        b[new] = rng.choice(np.array([-1, 1], dtype=np.int8), new.size)
        out[name] = torch.from_numpy(b.reshape(t.shape))
    return Connectome(out)


def pair(a: Connectome, b: Connectome, draws: int = 199) -> dict:
    return lineage_pair(a, b, tensor_table(a, Shape.of(GCFG), draws=9), tensor_table(b, Shape.of(GCFG), draws=9), GCFG,
                        draws=draws)


def test_two_lineages_sharing_half_their_survivors():
    a = uniform(11)
    p = pair(a, share_half(a, 12, same_signs=True))
    for r in p["tensors"]:
        assert r["shared"] == r["alive_a"] // 2 and r["jaccard"] == pytest.approx((r["alive_a"] // 2) / (1.5 * r["alive_a"]), rel=1e-3)
        assert r["chance_jaccard"] == pytest.approx(D / (2 - D), rel=0.01) and r["p_more"] < 1e-50
        assert r["symmetry"]["p_more"] == 1 / 200 and r["signs"]["fraction"] == 1.0 and r["symmetry"]["agree_p"] == 2 / 200
    assert p["over_uniform"] == p["over_symmetry"] == p["bonferroni"] == 10
    assert all(r["signs"]["p"] < 1e-20 and r["signs"]["null"] == pytest.approx(0.5, abs=0.05) for r in p["tensors"])
    assert p["sign_agree_fraction"] == 1.0 and p["sign_p"] < 1e-100 and p["sign_z"] > 20
    q = pair(a, share_half(a, 12, same_signs=False))  # the same wiring, signs not shared: agreement by chance only
    assert all(r["signs"]["p"] > 0.001 for r in q["tensors"]) and q["sign_p"] > 0.001


def leaning(seed: int, positive: float) -> Connectome:
    """Uniform masks whose survivors are positive with probability ``positive``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in uniform(seed).ternary.items():
        flat = t.numpy().reshape(-1).copy()
        alive = np.flatnonzero(flat)
        flat[alive] = np.where(rng.random(alive.size) < positive, 1, -1)
        out[name] = torch.from_numpy(flat.reshape(t.shape))
    return Connectome(out)


def test_sign_agreement_is_tested_against_the_lineages_own_sign_balances():
    """Independent signs of two lineages that both lean positive agree more often than fair coins would, by
    p1 p2 + (1 - p1)(1 - p2) (0.68 at 0.8 each): the null from the balances sees no agreement beyond that, a
    fair coin would. Identical signs agree completely, far above it."""
    a, b = leaning(21, 0.8), leaning(22, 0.8)
    p = pair(a, b, draws=19)
    for r in p["tensors"]:
        pa, pb = ((t.ternary[r["name"]] > 0).sum().item() / (t.ternary[r["name"]] != 0).sum().item() for t in (a, b))
        assert r["signs"]["null"] == pytest.approx(pa * pb + (1 - pa) * (1 - pb), abs=1e-12)
        assert r["signs"]["null"] == pytest.approx(0.68, abs=0.03)
    assert abs(p["sign_agree_fraction"] - p["sign_null"]) < 0.01 and p["sign_p"] > 0.001
    assert st.binomtest(p["sign_agree"], p["shared"], 0.5).pvalue < 1e-50  # what a fair coin would have flagged
    ps = [r["signs"]["p"] for s in range(6) for r in pair(leaning(30 + s, 0.7), leaning(40 + s, 0.6), draws=9)["tensors"]]
    assert st.kstest(ps, "uniform").pvalue > 0.001  # near the null tensor by tensor
    same = pair(a, Connectome(dict(a.ternary)), draws=19)
    assert same["sign_agree_fraction"] == 1.0 and same["sign_null"] < 0.7 and same["sign_p"] < 1e-100
    assert all(r["signs"]["fraction"] == 1.0 and r["signs"]["p"] < 1e-10 for r in same["tensors"])


def test_sign_agreement_pools_tensors_as_a_sum_of_binomials():
    rows = [ast.sign_agreement(np.ones(n, np.int8), np.where(np.arange(n) < k, 1, -1), pa, pb)
            for n, k, pa, pb in ((100, 60, 0.5, 0.5), (300, 250, 0.9, 0.9))]
    assert [r["agree"] for r in rows] == [60, 250] and [r["null"] for r in rows] == [0.5, pytest.approx(0.82)]
    assert rows[0]["p"] == pytest.approx(st.binomtest(60, 100, 0.5).pvalue)
    pooled = ast.pooled_agreement(rows)
    mean, var = 50 + 300 * 0.82, 25 + 300 * 0.82 * 0.18
    assert pooled["null"] == pytest.approx(mean / 400) and pooled["z"] == pytest.approx((310 - mean) / math.sqrt(var))
    assert ast.sign_agreement(np.zeros(0, np.int8), np.zeros(0, np.int8), 0.5, 0.5)["p"] is None


def test_independent_lineages_overlap_by_chance():
    ps, over = [], 0
    for s in range(12):
        p = pair(uniform(100 + s), uniform(200 + s), draws=49)
        ps += [r["p_more"] for r in p["tensors"]]
        over += p["over_uniform"] + p["over_symmetry"]
    assert over <= 2 and st.kstest(ps, "uniform").pvalue > 0.01


def test_identical_lineages_overlap_completely_and_beyond_every_relabelling():
    a = uniform(5)
    p = pair(a, Connectome(dict(a.ternary)), draws=99)
    assert p["jaccard"] == 1.0 and p["sign_agree_fraction"] == 1.0
    assert all(r["symmetry"]["p_more"] == 1 / 100 for r in p["tensors"])


def test_the_symmetry_null_relabels_without_changing_the_model():
    """Every relabelling the null draws (residual channels permuted and sign-flipped, heads and MLP units permuted)
    gives the same logits: so the null only ever asks about labels, never about function."""
    gcfg = GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_embd=32, block_size=16)
    torch.manual_seed(0)
    model = GPT(gcfg).eval()
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        want = model(x)
        draw = _relabelling(np.random.default_rng(1), gcfg)
        assert not np.array_equal(draw["residual"][0], np.arange(gcfg.n_embd))
        assert set(SYMMETRY) == {"wte", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "lm_head"}
        before = {n: p.clone() for n, p in model.named_parameters()}
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.from_numpy(_relabelled(p.numpy().copy(), name, draw, gcfg)))
        got = model(x)
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.dim() == 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- generations, magnitudes, tokens, codec


def nested(seed: int, pick_largest: bool):
    """Trained generation-0 weights, generation 0's connectome (its largest 80% by |w|) and a final one
    (26% of the weights) chosen among them: the largest |w|, or uniformly."""
    rng = np.random.default_rng(seed)
    weights, first, last = {}, {}, {}
    for name, shape in shapes().items():
        w = rng.normal(0, 0.02, shape)
        n = w.size
        order = np.argsort(np.abs(w).reshape(-1), kind="stable")
        s0 = np.zeros(n, dtype=bool)
        s0[order[n - round(0.8 * n):]] = True
        k = round(D * n)
        chosen = order[n - k:] if pick_largest else rng.choice(np.flatnonzero(s0), size=k, replace=False)
        sf = np.zeros(n, dtype=bool)
        sf[chosen] = True
        sign = np.where(w.reshape(-1) >= 0, 1, -1).astype(np.int8)
        weights[name] = torch.from_numpy(w)
        first[name] = torch.from_numpy((sign * s0).reshape(shape).astype(np.int8))
        last[name] = torch.from_numpy((sign * sf).reshape(shape).astype(np.int8))
    return weights, Connectome(first), Connectome(last)


def test_magnitude_ranks_find_survivors_that_were_the_largest_and_not_uniform_ones():
    weights, first, last = nested(0, pick_largest=True)
    m = magnitude_ranks(weights, first, last)
    assert m["in_top_fraction"] == 1.0 and m["construction_violations"] == 0 and m["outside_generation0"] == 0
    assert m["mean_percentile"] > 0.8 and m["chance"] == pytest.approx(D / 0.8, rel=0.01)
    assert all(r["top"]["p_more"] < 1e-100 for r in m["tensors"]) and m["sign_agree"] == m["final_survivors"]
    weights, first, last = nested(1, pick_largest=False)
    m = magnitude_ranks(weights, first, last)
    assert abs(m["in_top_fraction"] - m["chance"]) < 0.02 and abs(m["mean_percentile"] - 0.5) < 0.02
    assert st.kstest([r["rank"]["p"] for r in m["tensors"]], "uniform").pvalue > 0.01
    weights["lm_head.weight"].reshape(-1)[torch.argmin(weights["lm_head.weight"].abs())] = 1.0  # pruned, yet the largest
    assert magnitude_ranks(weights, first, last)["construction_violations"] == 1


def test_generation_step_counts_survivors_and_kept_signs_without_a_fair_coin_test():
    """Survivors restart at sign(w) * c, so keeping a sign is the default, not a coin toss: counted, not tested."""
    _, first, last = nested(2, pick_largest=False)
    flipped = {n: t.clone() for n, t in last.ternary.items()}
    flipped["lm_head.weight"] = -flipped["lm_head.weight"]
    step = generation_step(first, Connectome(flipped))
    assert step["were_alive"] == step["alive"] == sum(int((t != 0).sum()) for t in last.ternary.values())
    lm = next(r for r in step["tensors"] if r["name"] == "lm_head.weight")
    assert lm["same_sign"] == 0 and step["same_sign"] == step["alive"] - lm["alive"]
    assert "sign_p" not in step and not any("sign_p" in r for r in step["tensors"])
    assert not any("sign_p" in r for r in magnitude_ranks(*nested(3, pick_largest=True))["tensors"])


def test_token_table_relates_survival_to_frequency_and_flags_the_tie_rule():
    alive = np.concatenate([np.arange(40), np.arange(24)])  # 40 seen ids rising with frequency; 24 unseen rising with id
    table = [{"name": "transformer.wte.weight", "kind": "wte",
              "rows": {"alive": alive.tolist(), "null_range": [10, 24], "expected": 16.8, "dead": {"count": 2}}}]
    freq = np.concatenate([np.arange(1, 41) * 100, np.zeros(24, dtype=int)])
    out = token_table(table, freq, Shape.of(GCFG, [f"t{i}" for i in range(64)]))["wte"]
    assert out["seen"]["rho"] == pytest.approx(1.0) and out["unseen_by_id"]["rho"] == pytest.approx(1.0)
    assert (out["ids_seen"], out["ids_unseen"], out["dead_unseen"]) == (40, 24, 1)
    assert out["most"][0]["token"] == "t39" and out["least"][0]["token"] == "t40"


def test_codec_choice_follows_the_over_dispersed_axis():
    rng = np.random.default_rng(4)
    conn = uniform(4)
    shape = conn.ternary["transformer.wte.weight"].shape
    allowed = np.zeros(shape, dtype=bool)
    allowed[::2] = True  # every other token keeps all the wiring
    conn.ternary["transformer.wte.weight"] = place(shape, round(D * math.prod(shape)), rng, allowed=allowed)
    tables = tensor_table(conn, Shape.of(GCFG), draws=9)
    c = codec_agreement(tables, codec_bits(conn))
    assert c["agree"] == c["n"] == 10
    wte = next(r for r in c["tensors"] if r["name"] == "transformer.wte.weight")
    assert wte["context"] == "rows" and wte["gain"] > 0.2 and wte["over_dispersed"]["rows"]
    assert all(r["context"] == "iid" for r in c["tensors"] if r is not wte)
