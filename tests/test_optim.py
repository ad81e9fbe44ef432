"""AdamW and Muon as the reference builds them (reference-code-notes §6), checked against hand computations."""

import io
import math

import pytest
import torch

from connectomes.training.config import TrainConfig
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.optim import Muon, build_optimizer, newton_schulz

CFG = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16)
BODY = [f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn.c_attn.weight", "attn.c_proj.weight",
                                                               "mlp.c_fc.weight", "mlp.c_proj.weight")]


def model(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG)


def set_grads(m, seed):
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def test_adamw_is_one_group_with_decay_on_every_weight():
    m = model()
    opt = build_optimizer(m, TrainConfig(optimizer="adamw", lr=1e-3, beta1=0.9, beta2=0.95, weight_decay=0.1), "cpu")
    assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
    (group,) = opt.param_groups
    assert group["params"] == list(m.parameters())
    assert (group["betas"], group["eps"], group["weight_decay"], group["lr"]) == ((0.9, 0.95), 1e-8, 0.1, 1e-3)
    assert not group["fused"]


def test_muon_puts_block_matrices_on_muon_and_embedding_and_head_on_adam():
    m = model()
    opt = build_optimizer(m, TrainConfig(optimizer="muon", lr=1e-3), "cpu")
    names = {id(p): n for n, p in m.named_parameters()}
    muon, adam = opt.param_groups
    assert (muon["kind"], muon["lr_ratio"], adam["kind"], adam["lr_ratio"]) == ("muon", 1.0, "adamw", 10.0)
    assert [names[id(p)] for p in muon["params"]] == BODY
    assert [names[id(p)] for p in adam["params"]] == ["transformer.wte.weight", "lm_head.weight"]
    assert (muon["momentum"], muon["nesterov"], muon["ns_steps"], muon["bf16"]) == (0.95, True, 6, False)
    assert (adam["betas"], adam["eps"], adam["weight_decay"]) == ((0.9, 0.95), 1e-8, 0.0)


def test_muon_groups_survive_a_compile_wrapper():
    compiled = torch.compile(model())  # parameter names become _orig_mod.*
    muon, adam = build_optimizer(compiled, TrainConfig(optimizer="muon"), "cpu").param_groups
    assert (len(muon["params"]), len(adam["params"])) == (8, 2)


def test_newton_schulz_keeps_singular_vectors_and_pushes_singular_values_towards_one():
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(48, 48, generator=g))
    V, _ = torch.linalg.qr(torch.randn(80, 48, generator=g))
    S = torch.logspace(-1, 1, 48)  # singular values spread over a factor of 100
    wide = U @ torch.diag(S) @ V.T
    for mat, left, right in ((wide, U, V), (wide.T, V, U)):  # 48 x 80 and 80 x 48
        out = newton_schulz(mat * 123.0, steps=6)  # scale-free: the input is normalised first
        core = left.T @ out @ right
        s = torch.diagonal(core)
        assert torch.allclose(core, torch.diag(s), atol=1e-4)  # same singular vectors, no mixing
        assert s.min() > 0.65 and s.max() < 1.15  # the quintic's band around 1


def test_newton_schulz_in_bf16_is_close_to_fp32():
    g = torch.randn(32, 96, generator=torch.Generator().manual_seed(1))
    lo, hi = newton_schulz(g, bf16=True), newton_schulz(g)
    assert lo.dtype == torch.float32
    assert (lo - hi).norm() / hi.norm() < 0.05


def hand_muon(p0, grads, lrs, momentum=0.95):
    """The update rule written out: Nesterov momentum, NS, sqrt(max(1, rows/cols)), minus lr."""
    p, buf = p0.clone(), torch.zeros_like(p0)
    for g, lr in zip(grads, lrs):
        buf = momentum * buf + g
        u = newton_schulz(g + momentum * buf, steps=6)
        p = p - lr * math.sqrt(max(1.0, p.shape[0] / p.shape[1])) * u
    return p


def hand_adam(p0, grads, lrs, b1=0.9, b2=0.95, eps=1e-8):
    """The reference Muon's internal Adam: eps added to sqrt(v) before the bias correction."""
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (v.sqrt() + eps)
    return p


def test_muon_steps_match_the_hand_computation_at_the_scheduled_lr():
    m = model()
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = build_optimizer(m, TrainConfig(optimizer="muon", lr=3e-3), "cpu")
    schedule = [1e-3, 4e-4, 2e-3]  # what the training loop writes into every group each step
    grads = {n: [] for n in start}
    for step, lr in enumerate(schedule):
        for group in opt.param_groups:
            group["lr"] = lr
        set_grads(m, step)
        for n, p in m.named_parameters():
            grads[n].append(p.grad.clone())
        opt.step()
    params = dict(m.named_parameters())
    for n in BODY:  # c_fc is 128 x 32: its update is scaled by 2
        assert torch.allclose(params[n].detach(), hand_muon(start[n], grads[n], schedule), atol=1e-6, rtol=0), n
    for n in ("transformer.wte.weight", "lm_head.weight"):  # Adam at 10 x the schedule
        expected = hand_adam(start[n], grads[n], [10 * lr for lr in schedule])
        assert torch.allclose(params[n].detach(), expected, atol=1e-6, rtol=0), n


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        Muon([torch.nn.Parameter(torch.zeros(3))], [])


def _train(m, opt, steps, seed):
    for s in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (s + 1)
        set_grads(m, seed + s)
        opt.step()


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_state_dict_round_trip_resumes_bit_exactly(optimizer):
    cfg = TrainConfig(optimizer=optimizer, weight_decay=0.1)
    a = model()
    opt_a = build_optimizer(a, cfg, "cpu")
    _train(a, opt_a, 3, seed=0)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt_a.state_dict(), "model": a.state_dict()}, buffer)  # as the checkpoint does
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    b = model(seed=1)
    b.load_state_dict(saved["model"])
    opt_b = build_optimizer(b, cfg, "cpu")
    opt_b.load_state_dict(saved["optimizer"])
    _train(a, opt_a, 2, seed=10)
    _train(b, opt_b, 2, seed=10)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n
