"""Issue 30's controls keep exactly their statistic of the connectome and redraw the rest; each has a
description length computed by its stated code; the inherit arms start from the trained evolve weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from connectomes.connectome import arms, controls, genome
from connectomes.connectome.codec import codec_bits
from connectomes.connectome.ternary import Connectome
from connectomes.core.errors import ConfigError


def planted(seed: int = 0, shapes=None) -> Connectome:
    """A connectome with heterogeneous row and column densities (degree structure worth keeping), like an evolved one."""
    g = torch.Generator().manual_seed(seed)
    shapes = shapes or {"transformer.wte.weight": (64, 32), "transformer.h.0.attn.c_attn.weight": (96, 32),
                        "transformer.h.0.mlp.c_fc.weight": (128, 32), "transformer.h.1.mlp.c_proj.weight": (32, 128),
                        "lm_head.weight": (64, 32)}
    out = {}
    for name, (r, c) in shapes.items():
        p = torch.rand(r, 1, generator=g) * torch.rand(1, c, generator=g) * 0.9 + 0.02
        mask = torch.rand(r, c, generator=g) < p
        sign = torch.where(torch.rand(r, c, generator=g) < 0.6, 1, -1)
        out[name] = (mask * sign).to(torch.int8)
    return Connectome(out)


def counts(t: torch.Tensor):
    m = t != 0
    return m.sum(1).tolist(), m.sum(0).tolist(), int((t > 0).sum()), int(m.sum())


def test_rewired_keeps_every_row_and_column_count_and_the_sign_count_and_moves_edges_to_the_null_overlap():
    conn = planted()
    new = controls.rewired(conn, seed=3)
    for name, t in conn.ternary.items():
        assert counts(new.ternary[name]) == counts(t), name
        info = new.meta["control_info"][name]
        overlap = int(((new.ternary[name] != 0) & (t != 0)).sum())
        assert overlap == info["overlap"]
        # reached within 3 sd of the Chung-Lu null, far below the alive count it started from
        assert overlap <= info["null_overlap"] + 3 * math.sqrt(info["null_overlap"]) + 1
        assert overlap < 0.8 * info["alive"]
        assert info["rounds"] >= max(controls.MIN_ROUNDS, 2 * info["rounds_to_null"])


def test_rewired_overlap_matches_an_independent_estimate_of_the_uniform_degree_preserving_draw():
    # the expected overlap of a uniform graph with these degrees, estimated independently: the overlap between
    # two long, independently seeded chains started from the original (both stationary, hence independent draws)
    conn = planted(shapes={"x.weight": (80, 60)})
    t = conn.ternary["x.weight"].numpy() != 0
    pairs = []
    for k in range(6):
        a, _ = controls.rewire_mask(t, np.random.default_rng(100 + k))
        b, _ = controls.rewire_mask(t, np.random.default_rng(200 + k))
        pairs.append(int((a & b).sum()))
    ours = [int((controls.rewire_mask(t, np.random.default_rng(300 + k))[0] & t).sum()) for k in range(6)]
    assert abs(np.mean(ours) - np.mean(pairs)) < 4 * math.sqrt(np.mean(pairs))


def test_rows_kept_and_cols_kept_keep_one_side_only():
    conn = planted()
    rows, cols = controls.rows_kept(conn, seed=1), controls.cols_kept(conn, seed=1)
    for name, t in conn.ternary.items():
        r, c, pos, alive = counts(t)
        assert counts(rows.ternary[name])[0] == r and counts(rows.ternary[name])[2:] == (pos, alive)
        assert counts(cols.ternary[name])[1] == c and counts(cols.ternary[name])[2:] == (pos, alive)
    # the other side is redrawn: across all tensors, the column counts of rows_kept are not the connectome's
    assert any(counts(rows.ternary[n])[1] != counts(t)[1] for n, t in conn.ternary.items())
    assert any(counts(cols.ternary[n])[0] != counts(t)[0] for n, t in conn.ternary.items())


def test_sign_flipped_inverts_every_sign_and_is_an_exact_symmetry_of_the_model():
    """Inverting every weight of a bias-free pre-LayerNorm transformer negates the residual stream, which every
    LayerNorm maps to its negation and every read matrix maps back: the logits are the same, bit for bit."""
    from connectomes.model.gpt import GPT, GPTConfig
    from connectomes.pipeline.develop import build_arm_model

    gcfg = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16)
    torch.manual_seed(0)
    names = {k: tuple(p.shape) for k, p in GPT(gcfg).named_parameters() if p.dim() == 2}
    conn = planted(shapes=names)
    flipped = arms.get("sign_flipped").derive(conn, 5)
    assert all(torch.equal(flipped.ternary[k], -t) for k, t in conn.ternary.items())
    x = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    a, _ = build_arm_model("connectome", 0, gcfg, conn, 0.05)
    b, _ = build_arm_model("sign_flipped", 0, gcfg, conn, 0.05)
    assert torch.equal(a(x), b(x))
    c, _ = build_arm_model("mask_only", 0, gcfg, conn, 0.05)  # other signs do change the function
    assert not torch.allclose(a(x), c(x))


def test_transplant_keeps_the_group_and_draws_the_random_connectome_elsewhere_without_overlap_bias():
    conn = planted(seed=1)
    arm = arms.get("transplant:mlp")
    new = arm.derive(conn, 2)
    rand = arms.get("random").derive(conn, 2)
    group = arms.group_tensors("mlp", conn.ternary)
    assert group == {"transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"}
    for name, t in conn.ternary.items():
        if name in group:
            assert torch.equal(new.ternary[name], t)
        else:  # the same draw as the random arm of that seed, so the two differ only in the group
            assert torch.equal(new.ternary[name], rand.ternary[name])
            assert counts(new.ternary[name])[3] == counts(t)[3]
    # no overlap bias outside the group: the random positions overlap the connectome's as a uniform draw does
    rest = [n for n in conn.ternary if n not in group]
    overlap = sum(int(((new.ternary[n] != 0) & (conn.ternary[n] != 0)).sum()) for n in rest)
    expected = sum(int((conn.ternary[n] != 0).sum()) ** 2 / conn.ternary[n].numel() for n in rest)
    assert abs(overlap - expected) < 4 * math.sqrt(expected)


def test_transplant_of_blocks_and_a_group_that_names_nothing():
    conn = planted()
    assert arms.group_tensors("blocks1", conn.ternary) == {"transformer.h.1.mlp.c_proj.weight"}
    assert arms.group_tensors("blocks0-1", conn.ternary) == {n for n in conn.ternary if ".h." in n}
    with pytest.raises(ConfigError, match="names no tensor"):
        arms.get("transplant:blocks5-7").derive(conn, 0)
    assert not arms.known("transplant:heads") and not arms.known("lowrank:0") and arms.known("lowrank:16")


def test_low_rank_keeps_exact_alive_counts_and_its_error_falls_with_rank_to_the_connectome_at_full_rank():
    conn = planted()
    errors = {}
    for r in (1, 4, 16, 32):
        new = arms.get(f"lowrank:{r}").derive(conn, 0)
        for name, t in conn.ternary.items():
            assert counts(new.ternary[name])[3] == counts(t)[3]
        errors[r] = np.mean([v["relative_error"] for v in new.meta["control_info"].values()])
        mismatch = sum(int((new.ternary[n] != t).sum()) for n, t in conn.ternary.items())
        errors[r] = (errors[r], mismatch)
    assert errors[1][0] > errors[4][0] > errors[16][0] > errors[32][0]
    assert errors[1][1] > errors[4][1] > errors[16][1] > errors[32][1] == 0  # 32 = every tensor's full rank
    again = arms.get("lowrank:4").derive(conn, 9)  # no seed in it
    assert all(torch.equal(again.ternary[k], v) for k, v in arms.get("lowrank:4").derive(conn, 0).ternary.items())


@pytest.mark.parametrize("name", ["random", "mask_only", "rewired", "rows_kept", "cols_kept", "transplant:attention"])
def test_drawn_controls_are_reproducible_by_seed_and_differ_between_seeds(name):
    conn = planted()
    a, b, c = (arms.get(name).derive(conn, s) for s in (0, 0, 1))
    assert all(torch.equal(a.ternary[k], b.ternary[k]) for k in conn.ternary)
    assert any(not torch.equal(a.ternary[k], c.ternary[k]) for k in conn.ternary)


def test_description_lengths_follow_their_stated_codes():
    conn = planted()
    n = sum(t.numel() for t in conn.ternary.values()) + 1000  # + 1,000 weights outside the connectome (norms)
    shapes = [tuple(t.shape) for t in conn.ternary.values()]
    alive = sum(int((t != 0).sum()) for t in conn.ternary.values())
    width = lambda m: math.ceil(math.log2(m + 1))  # noqa: E731
    count_bits = sum(width(r * c) for r, c in shapes)
    sign_bits = sum(width(int((t != 0).sum())) for t in conn.ternary.values())
    bits = {a: arms.get(a).description_bits(conn, n) for a in [*arms.ARMS, "lowrank:4", "transplant:mlp"]}
    assert bits["dense"] == 0
    assert bits["random"] == count_bits
    assert bits["connectome"] == bits["sign_flipped"] == codec_bits(conn)["total"]["structured"]
    assert bits["mask_only"] < bits["connectome"]
    assert bits["rewired"] == sum(r * width(c) + c * width(r) for r, c in shapes) + sign_bits
    assert bits["rows_kept"] == sum(r * width(c) for r, c in shapes) + sign_bits
    assert bits["cols_kept"] == sum(c * width(r) for r, c in shapes) + sign_bits
    assert bits["lowrank:4"] == sum(4 * (r + c) * 16 for r, c in shapes) + count_bits
    assert bits["inherit"] == bits["connectome"] + 16 * (alive + 1000)
    assert bits["inherit_dense"] == 16 * n
    mlp = arms.group_tensors("mlp", conn.ternary)
    assert bits["transplant:mlp"] == genome.wiring_bits(conn, mlp) + sum(
        width(t.numel()) for k, t in conn.ternary.items() if k not in mlp)
    assert bits["random"] < bits["rewired"] < bits["connectome"] < bits["inherit"] < bits["inherit_dense"]


def test_inherit_arms_start_from_the_trained_weights():
    from connectomes.model.gpt import GPT, GPTConfig
    from connectomes.pipeline.develop import build_arm_model

    gcfg = GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=16)
    torch.manual_seed(11)
    trained = {k: v.detach().clone() for k, v in GPT(gcfg).state_dict().items()}
    params = {k: v for k, v in trained.items() if v.dim() == 2}
    conn = Connectome({k: torch.where(v.abs() > 0.01, torch.sign(v), 0).to(torch.int8) for k, v in params.items()})
    model, masks = build_arm_model("inherit", 0, gcfg, conn, 0.02, {k: v.clone() for k, v in trained.items()})
    for k, v in model.state_dict().items():
        want = trained[k] * (conn.ternary[k] != 0) if k in conn.ternary else trained[k]
        assert torch.equal(v, want), k
    assert masks is not None and set(masks.masks) == set(conn.ternary)
    model, masks = build_arm_model("inherit_dense", 0, gcfg, None, 0.02, {k: v.clone() for k, v in trained.items()})
    assert masks is None and all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    with pytest.raises(Exception, match="starts from trained evolve weights"):
        build_arm_model("inherit", 0, gcfg, conn, 0.02, None)


def test_a_study_develops_every_control_and_scores_the_untrained_view(tmp_path):
    """Every arm of the registry (and one of each family) runs through a tiny study: folders, resume and report."""
    import json

    from test_reliability import small

    from connectomes.api import study
    from connectomes.core.layout import RunLayout
    from connectomes.pipeline.evolve import generation_weights

    names = [*arms.ARMS, "transplant:mlp", "transplant:blocks0", "lowrank:2"]
    cfg = small(tmp_path, "controls", "develop.arms=" + ",".join(names), "develop.untrained_constants=0.01,0.05",
                "develop.seeds=0,1", "evolve.seeds=0")
    run = study(cfg, progress=False)
    lineage = RunLayout.of(cfg).lineage(0)
    for name in names:
        for seed in (0, 1):
            (unit,) = [p for p in (run / "develop").rglob(f"{name}/seed_{seed}") if p.is_dir()]
            assert (unit / "done.json").exists(), unit
    # inherit_dense starts from generation 0's trained weights: its step 0 is them, exactly
    from connectomes.training import checkpoint as ckpt

    (dense0,) = [p for p in (run / "develop").rglob("inherit_dense/seed_0") if p.is_dir()]
    start = ckpt.load_weights(dense0 / "steps" / "step_000000")
    want = generation_weights(cfg, lineage, 0)
    assert all(torch.equal(start[k], want[k]) for k in want)
    rec = json.loads((lineage.root / "untrained.json").read_text())
    assert rec["constants"] == [0.01, 0.05] and set(rec["losses"]) == {"connectome", "rewired", "random"}
    assert set(rec["losses"]["rewired"]) == {"0", "1"} and all(len(v) == 2 for v in rec["losses"]["random"].values())
    before = (lineage.root / "untrained.json").read_bytes()
    study(cfg, progress=False)  # a finished study passes through: nothing is scored again
    assert (lineage.root / "untrained.json").read_bytes() == before
    md = (run / "report" / "report.md").read_text()
    assert "## Controls" in md
