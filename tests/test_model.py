"""The model of method.md §1: shapes, init, RoPE convention, hidden states, reference state dicts."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from connectomes.io.load import load_model
from connectomes.core.errors import CheckpointError
from connectomes.model.gpt import GPT, GPTConfig, PRESETS, preset, rms_norm

TINY = GPTConfig(vocab_size=96, n_layer=2, n_head=2, n_embd=32, block_size=16)


def test_gpt2_124m_parameter_names_and_count():
    with torch.device("meta"):
        m = GPT(preset("gpt2-124m"))
    names = dict(m.named_parameters())
    assert names["transformer.wte.weight"].shape == (50304, 768)
    assert names["lm_head.weight"].shape == (50304, 768)
    assert names["transformer.h.0.attn.c_attn.weight"].shape == (2304, 768)
    assert names["transformer.h.11.mlp.c_proj.weight"].shape == (768, 3072)
    assert all(p.dim() == 2 for p in names.values())  # no biases, no norm gains
    assert m.num_params() == 162_201_600  # reference-code-notes §1 totals


def test_gpt2_417m_size():
    with torch.device("meta"):
        m = GPT(preset("gpt2-417m"))
    assert abs(m.num_params() - 417.6e6) < 0.1e6


def test_init_statistics():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=512, n_layer=4, n_head=4, n_embd=128, block_size=32))
    for name, p in m.named_parameters():
        want = 0.02 / math.sqrt(8) if name.endswith("c_proj.weight") else 0.02
        assert abs(p.std().item() - want) / want < 0.05, name


def test_untied_head():
    m = GPT(TINY)
    assert m.lm_head.weight.data_ptr() != m.transformer.wte.weight.data_ptr()


def test_forward_matches_hand_written_reference():
    """An independent re-implementation of reference model.py L17-196 gives the same logits."""
    torch.manual_seed(1)
    m = GPT(TINY).eval()
    idx = torch.randint(0, TINY.vocab_size, (2, 11))
    sd = m.state_dict()

    def norm(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def rope(x):  # x [B, T, H, D]
        T, D = x.shape[1], x.shape[3]
        inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
        f = torch.outer(torch.arange(T).float(), inv)
        cos, sin = f.cos()[None, :, None], f.sin()[None, :, None]
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], -1)

    x = sd["transformer.wte.weight"][idx]
    B, T, C = x.shape
    H = TINY.n_head
    for i in range(TINY.n_layer):
        h = norm(x)
        qkv = h @ sd[f"transformer.h.{i}.attn.c_attn.weight"].T
        q, k, v = qkv.split(C, -1)
        q, k = rope(q.view(B, T, H, -1)), rope(k.view(B, T, H, -1))
        v = v.view(B, T, H, -1)
        att = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) / math.sqrt(C // H)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        y = (att @ v.transpose(1, 2)).transpose(1, 2).reshape(B, T, C)
        x = x + (1 / math.sqrt(2 * TINY.n_layer)) * (y @ sd[f"transformer.h.{i}.attn.c_proj.weight"].T)
        h = norm(x)
        x = x + F.gelu(h @ sd[f"transformer.h.{i}.mlp.c_fc.weight"].T) @ sd[f"transformer.h.{i}.mlp.c_proj.weight"].T
    want = norm(x) @ sd["lm_head.weight"].T
    got = m(idx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_hidden_states_are_residual_stream():
    m = GPT(TINY).eval()
    idx = torch.randint(0, TINY.vocab_size, (1, 7))
    logits, hidden = m(idx, return_hidden=True)
    assert len(hidden) == TINY.n_layer + 1
    torch.testing.assert_close(hidden[0], m.transformer.wte(idx))
    torch.testing.assert_close(m.lm_head(rms_norm(hidden[-1])), logits)


def test_loss_ignores_minus_one():
    m = GPT(TINY)
    idx = torch.randint(0, TINY.vocab_size, (1, 8))
    tgt = idx.clone()
    tgt[0, :4] = -1
    none, loss = m(idx, tgt)
    assert none is None  # with targets the full logits are never built
    want = F.cross_entropy(m(idx)[0, 4:], tgt[0, 4:])
    torch.testing.assert_close(loss, want)


def _grads(m: GPT) -> dict[str, torch.Tensor]:
    out = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    return out


def _plain_loss(m: GPT, idx, tgt) -> torch.Tensor:
    """The unchunked loss: full logits, then F.cross_entropy (the path the chunked loss replaces)."""
    logits = m(idx)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1), ignore_index=-1)


@pytest.mark.parametrize("chunk", [1, 5, 16, 48, 4096])  # one token, uneven slices, exact slices, one slice
def test_chunked_loss_and_gradients_equal_the_full_logits_path(chunk):
    # Tolerance: fp32 on CPU, the two paths differ only in summation order (slices, and scaling
    # by 1/N after instead of before the matmuls): loss to 1e-6 relative, gradients to 1e-5/1e-7.
    torch.manual_seed(0)
    m = GPT(TINY)
    m.loss_chunk_tokens = chunk
    idx = torch.randint(0, TINY.vocab_size, (3, 16))
    tgt = torch.randint(0, TINY.vocab_size, (3, 16))
    tgt[0, :5] = -1
    _, loss = m(idx, tgt)
    (2.0 * loss).backward()  # a non-unit incoming gradient must scale both gradients
    got = _grads(m)
    want_loss = _plain_loss(m, idx, tgt)
    (2.0 * want_loss).backward()
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    for k, g in _grads(m).items():
        torch.testing.assert_close(got[k], g, rtol=1e-5, atol=1e-7, msg=k)


def test_chunked_loss_under_bf16_autocast_tracks_the_full_logits_path():
    # bf16 matmuls on both sides; the chunked path sums the head gradient in fp32, so the
    # tolerance is bf16's (~3 significant digits), not fp32's.
    torch.manual_seed(0)
    m = GPT(TINY)
    m.loss_chunk_tokens = 7
    idx, tgt = torch.randint(0, TINY.vocab_size, (2, 16)), torch.randint(0, TINY.vocab_size, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = m(idx, tgt)
    loss.backward()
    got = _grads(m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want_loss = _plain_loss(m, idx, tgt)
    want_loss.backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want_loss, rtol=1e-2, atol=0)
    for k, g in _grads(m).items():
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k], g, rtol=5e-2, atol=2e-3 * g.abs().max().item(), msg=k)


def test_chunked_loss_without_grad_and_bad_input():
    from connectomes.model.gpt import chunked_cross_entropy

    torch.manual_seed(0)
    m = GPT(TINY)
    idx, tgt = torch.randint(0, TINY.vocab_size, (2, 16)), torch.randint(0, TINY.vocab_size, (2, 16))
    with torch.no_grad():
        _, loss = m(idx, tgt)
        torch.testing.assert_close(loss, _plain_loss(m, idx, tgt), rtol=1e-6, atol=0)
    assert not loss.requires_grad
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match="at least one token"):
        chunked_cross_entropy(h, w, torch.zeros(4, dtype=torch.long), chunk=0)
    with pytest.raises(ValueError, match=r"targets \[N\]"):
        chunked_cross_entropy(h, w, torch.zeros(3, dtype=torch.long))
    assert torch.isnan(chunked_cross_entropy(h, w, torch.full((4,), -1)))  # nothing to score: nan, as F.cross_entropy


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    m = GPT(TINY)
    idx, tgt = torch.randint(0, TINY.vocab_size, (2, 16)), torch.randint(0, TINY.vocab_size, (2, 16))
    _, loss = m(idx, tgt)
    loss.backward()
    want = _grads(m)
    m.activation_checkpointing = True
    _, loss2 = m(idx, tgt)
    loss2.backward()
    # The recompute runs the same fp32 CPU kernels on the same inputs, so the numbers are identical.
    assert torch.equal(loss, loss2)
    for k, g in _grads(m).items():
        assert torch.equal(g, want[k]), k


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
@pytest.mark.parametrize("fmt", ["safetensors", "pt", "pt-wrapped"])
def test_reference_state_dict_loads_with_identical_logits(tmp_path, prefix, fmt):
    torch.manual_seed(3)
    src = GPT(GPTConfig(vocab_size=128, n_layer=2, n_head=1, n_embd=64, block_size=32)).eval()
    sd = {prefix + k: v.clone() for k, v in src.state_dict().items()}  # includes rotary.inv_freq, as the reference
    if fmt == "safetensors":
        path = tmp_path / "ref.safetensors"
        save_file(sd, str(path))
    else:
        path = tmp_path / "ref.pt"
        torch.save({"model_state_dict": sd, "iteration": 7} if fmt == "pt-wrapped" else sd, path)
    model, info = load_model(path)
    idx = torch.randint(0, 128, (2, 20))
    assert torch.equal(model(idx), src(idx))
    assert info["tokenizer"] == "gpt2"


def test_reference_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "args": argparse_namespace()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(path)


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=1.0)


def test_mismatched_state_dict_names_the_tensor(tmp_path):
    src = GPT(TINY)
    sd = src.state_dict()
    sd["transformer.h.0.mlp.c_fc.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match="c_fc"):
        load_model(path, n_head=2)


def test_presets_are_valid():
    for name in PRESETS:
        preset(name)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("gpt5")
