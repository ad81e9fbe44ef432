"""Pruning, re-initialisation, controls and the masking hook (method.md §3-4)."""

import math

import pytest
import torch

from connectomes.config import TrainConfig
from connectomes.connectome import (Connectome, ParamMask, dense_masks, magnitude_prune, prunable_names,
                                    reinit_signed_constant, rewind)
from connectomes.errors import CheckpointError
from connectomes.model import GPT, GPTConfig
from connectomes.optim import build_optimizer
from connectomes.train import train_step

CFG = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16)


def model(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG)


def test_every_2d_tensor_is_prunable_including_embeddings_and_head():
    names = prunable_names(model())
    assert names[0] == "transformer.wte.weight" and names[-1] == "lm_head.weight"
    assert len(names) == 2 + 4 * CFG.n_layer


def test_prune_removes_exactly_floor_fraction_of_alive_per_tensor_over_generations():
    m = model()
    masks = dense_masks(m)
    expected = {k: v.numel() for k, v in masks.items()}
    for g in range(6):
        masks = magnitude_prune(m, masks, 0.2)
        for k in expected:
            expected[k] -= math.floor(0.2 * expected[k])
        assert {k: int(v.sum()) for k, v in masks.items()} == expected
        reinit_signed_constant(m, masks, 0.02)
        with torch.no_grad():  # "training": perturb survivors so magnitudes differ again
            for n, p in m.named_parameters():
                p.add_(torch.randn_like(p) * 0.01).mul_(masks[n])
    for k, v in masks.items():
        assert abs(v.float().mean().item() - 0.8 ** 6) < 0.01


def test_pruned_weights_are_the_smallest_and_zeroed_at_once():
    m = model()
    w = {n: p.detach().clone() for n, p in m.named_parameters()}
    masks = magnitude_prune(m, dense_masks(m), 0.2)
    for n, p in m.named_parameters():
        pruned, kept = w[n][~masks[n]].abs(), w[n][masks[n]].abs()
        assert pruned.max() <= kept.min()
        assert torch.all(p[~masks[n]] == 0.0)
        assert torch.equal(p[masks[n]], w[n][masks[n]])


def test_ties_are_pruned_by_index_with_the_exact_count():
    m = model()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(0.02)  # every weight tied, like embedding rows of bytes that never occur
    masks = magnitude_prune(m, dense_masks(m), 0.2)
    for n, mask in masks.items():
        flat = mask.view(-1)
        k = math.floor(0.2 * flat.numel())
        assert int((~flat).sum()) == k
        assert not flat[:k].any() and flat[k:].all()  # lowest flat indices go first


def test_global_scope_removes_exact_total_with_one_threshold():
    m = model()
    with torch.no_grad():
        m.lm_head.weight.mul_(0.1)  # one tensor much smaller than the rest
    masks = magnitude_prune(m, dense_masks(m), 0.2, scope="global")
    total = sum(v.numel() for v in masks.values())
    assert total - sum(int(v.sum()) for v in masks.values()) == math.floor(0.2 * total)
    assert masks["lm_head.weight"].float().mean() < 0.5 < masks["transformer.wte.weight"].float().mean()


def test_signed_constant_and_rewind():
    m = model()
    snap = {n: p.detach().clone() for n, p in m.named_parameters()}
    masks = magnitude_prune(m, dense_masks(m), 0.5)
    trained = {n: p.detach().clone() for n, p in m.named_parameters()}
    reinit_signed_constant(m, masks, 0.02)
    for n, p in m.named_parameters():
        assert torch.equal(p[masks[n]], torch.sign(trained[n][masks[n]]) * 0.02)
        assert torch.all(p[~masks[n]] == 0)
    rewind(m, masks, snap)
    for n, p in m.named_parameters():
        assert torch.equal(p[masks[n]], snap[n][masks[n]]) and torch.all(p[~masks[n]] == 0)


def _connectome(seed=0) -> Connectome:
    m = model(seed)
    masks = dense_masks(m)
    for _ in range(3):
        masks = magnitude_prune(m, masks, 0.2)
    return Connectome.from_model(m, masks, {"generation": 3})


def test_random_like_has_exact_counts_new_positions_and_is_seeded():
    c = _connectome()
    r1, r2, r3 = c.random_like(7), c.random_like(7), c.random_like(8)
    for n, t in c.ternary.items():
        assert int((r1.ternary[n] != 0).sum()) == int((t != 0).sum())
        assert not torch.equal(r1.ternary[n] != 0, t != 0)
    assert r1.equal(r2) and not r1.equal(r3)
    signs = torch.cat([v[v != 0] for v in r1.ternary.values()]).float()
    assert abs((signs > 0).float().mean().item() - 0.5) < 0.05


def test_mask_only_keeps_the_wiring_and_redraws_signs():
    c = _connectome()
    mo = c.mask_only(3)
    for n, t in c.ternary.items():
        assert torch.equal(mo.ternary[n] != 0, t != 0)
    assert not mo.equal(c)


def test_apply_sets_ternary_times_c_and_refuses_a_wrong_model():
    c = _connectome()
    m = model(5)
    c.apply(m, 0.02)
    for n, p in m.named_parameters():
        assert torch.equal(p.detach(), c.ternary[n].float() * 0.02)
    other = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=48, block_size=16))
    with pytest.raises(CheckpointError, match="transformer.wte.weight.*shape"):
        c.apply(other)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_pruned_weights_stay_exactly_zero_under_training(optimizer):
    m = model()
    masks = dense_masks(m)
    for _ in range(2):
        masks = magnitude_prune(m, masks, 0.2)
    reinit_signed_constant(m, masks, 0.02)
    hook = ParamMask(masks)
    opt = build_optimizer(m, TrainConfig(optimizer=optimizer, weight_decay=0.1, lr=1e-2), "cpu")
    for step in range(25):
        x = torch.randint(0, 64, (4, 16))
        train_step(m, m, opt, x, x.roll(-1, 1), micro=2, masks=hook, grad_clip=1.0)
    for n, p in m.named_parameters():
        assert torch.all(p[~masks[n]] == 0.0), n
        assert (p[masks[n]] != 0).any()


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_without_the_mask_pruned_weights_would_move(optimizer):
    m = model()
    masks = magnitude_prune(m, dense_masks(m), 0.2)
    opt = build_optimizer(m, TrainConfig(optimizer=optimizer, weight_decay=0.1, lr=1e-2), "cpu")
    x = torch.randint(0, 64, (4, 16))
    train_step(m, m, opt, x, x.roll(-1, 1), micro=4, masks=None)
    assert any((p[~masks[n]] != 0).any() for n, p in m.named_parameters())


def test_grads_are_masked_before_clipping():
    """Pruned entries must not count towards the clipped norm."""
    m = model()
    masks = magnitude_prune(m, dense_masks(m), 0.5)
    x = torch.randint(0, 64, (4, 16))
    m(x, x.roll(-1, 1))[1].backward()
    full = torch.sqrt(sum((p.grad ** 2).sum() for p in m.parameters()))
    ParamMask(masks).apply_to_grads(m)
    masked = torch.sqrt(sum((p.grad ** 2).sum() for p in m.parameters()))
    assert masked < full
    assert all(torch.all(p.grad[~masks[n]] == 0) for n, p in m.named_parameters())


def test_stats_entropy_bound():
    c = _connectome()
    st = c.stats()
    d = st["total"]["density"]
    assert abs(d - 0.512) < 0.01
    h = -(d * math.log2(d) + (1 - d) * math.log2(1 - d)) + d
    assert abs(st["total"]["entropy_bits"] - h) < 0.01
