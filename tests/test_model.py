"""The model of method.md §1: shapes, init, RoPE convention, hidden states, reference state dicts."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from connectomes.checkpoint import load_model
from connectomes.errors import CheckpointError
from connectomes.model import GPT, GPTConfig, PRESETS, preset, rms_norm

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
    logits, loss = m(idx, tgt)
    want = F.cross_entropy(logits[0, 4:], tgt[0, 4:])
    torch.testing.assert_close(loss, want)


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
