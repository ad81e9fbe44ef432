"""Pruning, re-initialisation, controls and the masking hook (method.md §3-4)."""

import math

import pytest
import torch
from safetensors.torch import load, save

from connectomes.training.config import TrainConfig
from connectomes.connectome.ternary import Connectome
from connectomes.connectome.masks import ParamMask, dense_masks, magnitude_prune, prunable_names, reinit_signed_constant, rewind
from connectomes.core.errors import CheckpointError, UserError
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.optim import build_optimizer
from connectomes.training.loop import train_step

CFG = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16)


def model(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG)


class Weights(torch.nn.Module):
    """Named 2-D parameters with given values, for hand-computed pruning cases."""

    def __init__(self, **tensors):
        super().__init__()
        for name, values in tensors.items():
            self.register_parameter(name, torch.nn.Parameter(torch.tensor(values, dtype=torch.float32)))


def test_every_2d_tensor_is_prunable_including_embeddings_and_head():
    names = prunable_names(model())
    assert names == [n for n, _ in model().named_parameters()]
    assert names[0] == "transformer.wte.weight" and names[-1] == "lm_head.weight"
    assert len(names) == 2 + 4 * CFG.n_layer
    assert all(m.dtype == torch.bool and m.all() for m in dense_masks(model()).values())


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
    # wte is 64 x 32 = 2048 weights: 2048 -> 1639 -> 1312 -> 1050 -> 840 -> 672 -> 538
    assert int(masks["transformer.wte.weight"].sum()) == 538


def test_pruned_weights_are_the_smallest_and_zeroed_at_once():
    m = model()
    w = {n: p.detach().clone() for n, p in m.named_parameters()}
    masks = magnitude_prune(m, dense_masks(m), 0.2)
    for n, p in m.named_parameters():
        pruned, kept = w[n][~masks[n]].abs(), w[n][masks[n]].abs()
        assert pruned.max() <= kept.min()
        assert torch.all(p[~masks[n]] == 0.0)
        assert torch.equal(p[masks[n]], w[n][masks[n]])


def test_ties_at_the_threshold_go_lowest_flat_index_first():
    # |w| sorted: 0.01 (index 3), then five ties at 0.02 (indices 1, 2, 4, 6, 7); k = floor(0.4 * 10) = 4
    m = Weights(w=[[0.5, -0.02, 0.02, 0.01, -0.02], [0.3, 0.02, 0.02, 0.9, -0.7]])
    masks = magnitude_prune(m, dense_masks(m), 0.4)
    assert (~masks["w"]).view(-1).nonzero().view(-1).tolist() == [1, 2, 3, 4]
    assert m.w.detach().view(-1).tolist() == pytest.approx([0.5, 0, 0, 0, 0, 0.3, 0.02, 0.02, 0.9, -0.7])


def test_all_tied_tensor_prunes_the_exact_count_in_index_order():
    m = model()
    with torch.no_grad():
        for p in m.parameters():  # +-c everywhere, like embedding rows of bytes that never occur
            p.copy_(torch.where(torch.rand_like(p) < 0.5, 0.02, -0.02))
    masks = dense_masks(m)
    for _ in range(2):
        masks = magnitude_prune(m, masks, 0.2)
    for n, mask in masks.items():
        n_total = mask.numel()
        k1 = math.floor(0.2 * n_total)
        k2 = math.floor(0.2 * (n_total - k1))
        flat = mask.view(-1)
        assert not flat[:k1 + k2].any() and flat[k1 + k2:].all(), n


def test_prune_skips_already_pruned_weights():
    m = Weights(w=[[0.0, 0.0, 5.0, 4.0, 3.0, 2.0]])
    mask = {"w": torch.tensor([[False, False, True, True, True, True]])}
    new = magnitude_prune(m, mask, 0.5)  # 4 alive -> remove the 2 smallest alive, not the zeros
    assert new["w"].tolist() == [[False, False, True, True, False, False]]
    assert mask["w"].tolist() == [[False, False, True, True, True, True]]  # the input is not modified


def test_global_scope_hand_example_ties_in_tensor_then_index_order():
    # 8 alive weights, k = floor(0.375 * 8) = 3: 0.5 (b[1,1]), then two of the three 1.0 ties:
    # a[0,1] (first tensor) and b[0,0]; b[1,0] survives.
    m = Weights(a=[[3.0, 1.0], [2.0, 5.0]], b=[[-1.0, 4.0], [1.0, 0.5]])
    masks = magnitude_prune(m, dense_masks(m), 0.375, scope="global")
    assert masks["a"].tolist() == [[True, False], [True, True]]
    assert masks["b"].tolist() == [[False, True], [True, False]]


def test_global_scope_removes_exact_total_with_one_threshold():
    m = model()
    with torch.no_grad():
        m.lm_head.weight.mul_(0.1)  # one tensor much smaller than the rest
    w = {n: p.detach().abs().clone() for n, p in m.named_parameters()}
    masks = magnitude_prune(m, dense_masks(m), 0.2, scope="global")
    total = sum(v.numel() for v in masks.values())
    assert total - sum(int(v.sum()) for v in masks.values()) == math.floor(0.2 * total)
    pruned_max = max(w[n][~masks[n]].max() for n in masks if (~masks[n]).any())
    kept_min = min(w[n][masks[n]].min() for n in masks)
    assert pruned_max <= kept_min
    assert masks["lm_head.weight"].float().mean() < 0.5 < masks["transformer.wte.weight"].float().mean()


def test_prune_refuses_diverged_weights():
    m = Weights(w=[[1.0, float("nan"), 2.0]])
    with pytest.raises(UserError, match="w.*non-finite"):
        magnitude_prune(m, dense_masks(m), 0.2)


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


def test_an_exactly_zero_survivor_is_positive_in_reinit_and_connectome():
    m = Weights(w=[[0.0, -0.0, -3.0, 2.0]])
    masks = {"w": torch.tensor([[True, True, True, False]])}
    assert Connectome.from_model(m, masks).ternary["w"].tolist() == [[1, 1, -1, 0]]
    reinit_signed_constant(m, masks, 0.5)
    assert m.w.detach().tolist() == [[0.5, 0.5, -0.5, 0.0]]


def _connectome(seed=0) -> Connectome:
    m = model(seed)
    masks = dense_masks(m)
    for _ in range(3):
        masks = magnitude_prune(m, masks, 0.2)
    return Connectome.from_model(m, masks, {"generation": 3})


def test_connectome_is_mask_times_sign_and_rejects_non_ternary_values():
    m = Weights(w=[[0.3, -0.1], [-0.2, 0.4]])
    masks = {"w": torch.tensor([[True, False], [True, True]])}
    c = Connectome.from_model(m, masks, {"generation": 1})
    assert c.ternary["w"].dtype == torch.int8 and c.ternary["w"].tolist() == [[1, 0], [-1, 1]]
    assert c.masks()["w"].tolist() == masks["w"].tolist()
    assert c.density() == {"w": 0.75, "total": 0.75}
    with pytest.raises(ValueError, match="w"):
        Connectome({"w": torch.tensor([[2, 0]])})


def test_random_like_has_exact_counts_new_positions_and_is_seeded():
    c = _connectome()
    r1, r2, r3 = c.random_like(7), c.random_like(7), c.random_like(8)
    for n, t in c.ternary.items():
        assert int((r1.ternary[n] != 0).sum()) == int((t != 0).sum())
        assert not torch.equal(r1.ternary[n] != 0, t != 0)
    assert r1.equal(r2) and not r1.equal(r3)
    assert r1.meta == {"generation": 3, "control": "random", "control_seed": 7}
    signs = torch.cat([v[v != 0] for v in r1.ternary.values()]).float()
    assert abs((signs > 0).float().mean().item() - 0.5) < 0.05
    alive = torch.cat([(v != 0).view(-1).float() for v in r1.ternary.values()])
    assert abs(alive.mean().item() - 0.512) < 0.01


def test_control_draws_do_not_depend_on_tensor_order():
    c = _connectome()
    reordered = Connectome(dict(reversed(list(c.ternary.items()))), c.meta)
    assert reordered.random_like(5).equal(c.random_like(5))


def test_mask_only_keeps_the_wiring_and_redraws_signs():
    c = _connectome()
    mo = c.mask_only(3)
    for n, t in c.ternary.items():
        assert torch.equal(mo.ternary[n] != 0, t != 0)
    agree = sum(int((mo.ternary[n] == t)[t != 0].sum()) for n, t in c.ternary.items())
    alive = sum(int((t != 0).sum()) for t in c.ternary.values())
    assert 0.45 < agree / alive < 0.55  # independent signs agree half the time


def test_apply_sets_ternary_times_c_and_refuses_a_wrong_model():
    c = _connectome()
    m = model(5)
    c.apply(m, 0.02)
    for n, p in m.named_parameters():
        assert torch.equal(p.detach(), c.ternary[n].float() * 0.02)
    other = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=48, block_size=16))
    with pytest.raises(CheckpointError, match=r"transformer.wte.weight has shape \(64, 32\) but the model's is \(64, 48\)"):
        c.apply(other)
    deeper = GPT(GPTConfig(vocab_size=64, n_layer=3, n_head=2, n_embd=32, block_size=16))
    with pytest.raises(CheckpointError, match=r"no tensor for transformer.h.2"):
        c.apply(deeper)


def test_stats_hand_computed():
    c = Connectome({"a": torch.tensor([[1, 1, 1, -1, 0, 0, 0, 0]]), "b": torch.tensor([[1, -1]])})
    st = c.stats()
    a, b = st["tensors"]
    assert (a["numel"], a["alive"], a["density"], a["sign_balance"]) == (8, 4, 0.5, 0.75)
    assert a["entropy_bits"] == pytest.approx(1.0 + 0.5)  # H(0.5) + d
    assert a["entropy_bits_measured_signs"] == pytest.approx(1.0 + 0.5 * 0.8112781244591328)
    assert (b["density"], b["sign_balance"], b["entropy_bits"]) == (1.0, 0.5, 1.0)
    t = st["total"]
    assert (t["numel"], t["alive"], t["density"], t["sign_balance"]) == (10, 6, 0.6, 4 / 6)
    assert t["entropy_bits"] == pytest.approx((8 * 1.5 + 2 * 1.0) / 10)


# ---- the training hook

def _pruned_model(fraction=0.2, generations=2):
    m = model()
    masks = dense_masks(m)
    for _ in range(generations):
        masks = magnitude_prune(m, masks, fraction)
    reinit_signed_constant(m, masks, 0.02)
    return m, masks


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_pruned_weights_stay_exactly_zero_under_training(optimizer):
    m, masks = _pruned_model()
    hook = ParamMask(masks)
    opt = build_optimizer(m, TrainConfig(optimizer=optimizer, weight_decay=0.1, lr=1e-2), "cpu")
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    for _ in range(25):
        x = torch.randint(0, 64, (4, 16))
        train_step(m, m, opt, x, x.roll(-1, 1), micro=2, masks=hook, grad_clip=1.0)
    for n, p in m.named_parameters():
        assert torch.all(p[~masks[n]] == 0.0), n
        assert not torch.equal(p[masks[n]], start[n][masks[n]]), n  # the survivors did train


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_without_the_mask_pruned_weights_would_move(optimizer):
    m, masks = _pruned_model()
    opt = build_optimizer(m, TrainConfig(optimizer=optimizer, weight_decay=0.1, lr=1e-2), "cpu")
    x = torch.randint(0, 64, (4, 16))
    train_step(m, m, opt, x, x.roll(-1, 1), micro=4, masks=None)
    assert all((p[~masks[n]] != 0).any() for n, p in m.named_parameters())


def test_grads_are_masked_in_place_and_none_grads_skipped():
    m, masks = _pruned_model(0.5, 1)
    x = torch.randint(0, 64, (4, 16))
    m(x, x.roll(-1, 1))[1].backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.lm_head.weight.grad = None
    ParamMask(masks).apply_to_grads(m)
    assert m.lm_head.weight.grad is None
    for n, p in m.named_parameters():
        if n != "lm_head.weight":
            assert torch.equal(p.grad, grads[n] * masks[n]), n


class FakeDDP(torch.nn.Module):
    """Names parameters ``module.*`` as DistributedDataParallel does."""

    def __init__(self, inner):
        super().__init__()
        self.module = inner


def test_param_mask_finds_parameters_through_ddp_and_compile_wrappers():
    m, masks = _pruned_model()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(1.0)
    ParamMask(masks).apply_to_weights(torch.compile(FakeDDP(m)))  # names: _orig_mod.module.*
    for n, p in m.named_parameters():
        assert torch.equal(p.detach(), masks[n].float()), n


def test_param_mask_follows_the_model_and_refuses_a_wrong_one():
    m, masks = _pruned_model()
    hook = ParamMask(masks)
    hook.apply_to_weights(m)
    other = model(3)  # a new model object: the hook re-resolves its parameters
    hook.apply_to_weights(other)
    assert all(torch.all(p[~masks[n]] == 0) for n, p in other.named_parameters())
    small = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=16))
    with pytest.raises(CheckpointError, match="transformer.h.1"):
        hook.apply_to_weights(small)


def test_param_mask_state_dict_round_trips_through_safetensors():
    _, masks = _pruned_model()
    state = ParamMask(masks).state_dict()
    assert all(v.dtype == torch.uint8 for v in state.values())
    back = ParamMask.from_state_dict(load(save(state)))
    assert back.masks.keys() == masks.keys()
    assert all(torch.equal(back.masks[k], masks[k]) for k in masks)
    state["lm_head.weight"][0, 0] = 2
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        ParamMask.from_state_dict(state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prune_and_hook_match_cpu():
    m_cpu, m_gpu = model(), model().cuda()
    masks_cpu = magnitude_prune(m_cpu, dense_masks(m_cpu), 0.2)
    masks_gpu = magnitude_prune(m_gpu, dense_masks(m_gpu), 0.2)
    glob_cpu = magnitude_prune(m_cpu, masks_cpu, 0.2, scope="global")
    glob_gpu = magnitude_prune(m_gpu, masks_gpu, 0.2, scope="global")
    for n in masks_cpu:
        assert masks_gpu[n].is_cuda and torch.equal(masks_gpu[n].cpu(), masks_cpu[n])
        assert torch.equal(glob_gpu[n].cpu(), glob_cpu[n])
    hook = ParamMask(masks_cpu).to("cuda")
    opt = build_optimizer(m_gpu, TrainConfig(optimizer="muon"), "cuda")
    x = torch.randint(0, 64, (4, 16), device="cuda")
    train_step(m_gpu, m_gpu, opt, x, x.roll(-1, 1), micro=4, masks=hook)
    assert all(torch.all(p[~masks_cpu[n].cuda()] == 0) for n, p in m_gpu.named_parameters())
