"""A connectomes GPT as a Hugging Face causal LM, self-contained for ``trust_remote_code=True``.

The computation is that of ``connectomes.model.gpt.GPT`` operation for operation (fp32 weightless RMS
norm, the authors' half-split RoPE with its sign, attention branch scaled by 1/sqrt(2*n_layer), exact
GELU, untied lm_head, no biases), so on CPU fp32 its logits equal the toolkit's bit for bit.
Additions over the authors' forward, for lm-evaluation-harness and Brain-Score: ``attention_mask``,
``output_hidden_states`` and a ``CausalLMOutputWithPast`` return. ``hidden_states`` are the embedding
output and each block's output before the final norm (the toolkit's layers; GPT-2's HF code instead
normalises the last one). No KV cache: ``generate`` re-runs the whole prefix each step.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .config import GPTConfig

try:  # transformers 5: these initialisers skip tensors already loaded from the checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4 guards by module instead
    _init = nn.init


def rms_norm(x, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


def rotate(x, base):
    """RoPE on x [B, T, H, D]: half-split layout, y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos.
    The frequencies are computed here rather than held in a buffer: transformers builds models on the
    meta device, where a non-persistent buffer would never get its values."""
    T, D = x.size(1), x.size(-1)
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, device=x.device).float() / D))
    freqs = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), inv_freq)
    cos, sin = freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]
    d = D // 2
    x1, x2 = x[..., :d].float(), x[..., d:].float()
    return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.base = config.n_head, config.rope_base
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, mask=None):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = rotate(q.view(B, T, self.n_head, hd), self.base).transpose(1, 2)
        k = rotate(k.view(B, T, self.n_head, hd), self.base).transpose(1, 2)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)
        if mask is None:  # the toolkit's exact kernel call
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)
        self.attn_scale = 1.0 / math.sqrt(2 * config.n_layer)
        self.eps = config.norm_eps

    def forward(self, x, mask=None):
        x = x + self.attn_scale * self.attn(rms_norm(x, self.eps), mask)
        return x + self.mlp(rms_norm(x, self.eps))


def padding_mask(attention_mask, T):
    """Boolean [B, 1, T, T]: causal and not a padded key, or None when nothing is padded (so the
    unpadded case runs the same kernel as the toolkit). A position always sees itself, so a padded
    query row is never all-masked (which would give NaN)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keys = attention_mask[:, None, None, :T].bool()
    causal = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=attention_mask.device)
    return (causal & keys) | eye


class GPT(PreTrainedModel):
    config_class = GPTConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    # The authors' checkpoints hold the RoPE frequencies as buffers; they are recomputed here.
    _keys_to_ignore_on_load_unexpected = [r"rotary\.inv_freq"]

    def __init__(self, config):
        super().__init__(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        """The authors' initialisation, only reached for weights a checkpoint does not supply: N(0, 0.02),
        the two c_proj (the only Linears that map back to the residual width) N(0, 0.02/sqrt(2*n_layer))."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            proj = isinstance(module, nn.Linear) and module is not self.lm_head and module.weight.shape[0] == self.config.n_embd
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if proj else 0.02
            _init.normal_(module.weight, mean=0.0, std=std)

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        """``labels`` are used as given (not shifted), with ignore_index -1, as the authors' model."""
        x = self.transformer.wte(input_ids)
        mask = padding_mask(attention_mask, input_ids.size(1))
        hidden = [x] if output_hidden_states else None
        for block in self.transformer.h:
            x = block(x, mask)
            if hidden is not None:
                hidden.append(x)
        logits = self.lm_head(rms_norm(x, self.config.norm_eps))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1), ignore_index=-1)
        return CausalLMOutputWithPast(loss=loss, logits=logits,
                                      hidden_states=tuple(hidden) if hidden is not None else None)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}
