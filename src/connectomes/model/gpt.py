"""The GPT of docs/method.md §1, in one readable file (nanoGPT style).

GPT-2 family with the reference code's choices: no biases, no learned positions (RoPE with the
reference's sign convention), weightless fp32 RMS norm before attention, before the MLP and before
``lm_head``, attention branch scaled by 1/sqrt(2*n_layer), exact GELU, untied ``lm_head``.
Parameter names match the reference so its state dicts load without renaming.

Import-safe: nothing here touches the disk, the network or global torch settings.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

# Tokens per slice of the chunked loss: at the GPT-2 vocabulary one slice's fp32 logits are
# 2048 x 50304 x 4 B = 412 MB, against 3.3 GB for a whole 16 x 1024 micro-batch.
LOSS_CHUNK_TOKENS = 2048
# Far beyond any released GPT (the largest have ~128 layers, width ~25k and vocabularies ~256k), so that
# a slip such as n_layer=1e9 is refused by name at once instead of by the allocator minutes later.
SHAPE_LIMITS = {"vocab_size": 1 << 22, "n_layer": 1024, "n_head": 1024, "n_embd": 1 << 16, "block_size": 1 << 20}
# Bytes per weight a model costs in this process's memory while it is built: fp32 weights, plus the
# state dict of the same size they are loaded from (a checkpoint) or copied to (another device).
BUILD_BYTES_PER_WEIGHT = 8


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name, top in SHAPE_LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"model.{name} must be an integer, got {v!r}")
            if not 1 <= v <= top:
                raise ValueError(f"model.{name} = {v:,} must be between 1 and {top:,}")
        for name in ("rope_base", "norm_eps", "init_std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"model.{name} must be a positive finite number, got {v!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError("model head size (n_embd / n_head) must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def num_weights(self) -> int:
        """The model's weights without building it: wte and lm_head (V x E each), and per block c_attn (3E x E),
        attn.c_proj (E x E), mlp.c_fc (4E x E) and mlp.c_proj (E x 4E); no biases, no norm gains."""
        return 2 * self.vocab_size * self.n_embd + 12 * self.n_layer * self.n_embd ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    def n_weights(self) -> int:
        """Weights of the model: embedding and lm_head (untied), 12 d^2 per block (no biases, no norm weights)."""
        return 2 * self.vocab_size * self.n_embd + 12 * self.n_layer * self.n_embd ** 2


def available_memory() -> int | None:
    """Bytes this machine can still allocate (MemAvailable), else its physical memory; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: GPTConfig, what: str) -> None:
    """Raise ValueError naming ``what`` when building ``cfg`` would need more memory than is available,
    before anything is allocated (the allocator would fail only after minutes of paging)."""
    need, have = BUILD_BYTES_PER_WEIGHT * cfg.n_weights(), available_memory()
    if have is not None and need > have:
        raise ValueError(f"{what} has {cfg.n_weights():,} weights (n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, vocab_size "
                         f"{cfg.vocab_size}) and needs about {_size(need)} of memory to build; this machine has "
                         f"{_size(have)} available")


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


# Sizes of the presets. `demo` and `replicate-cpu` are sized for a 2-core CPU: `demo` finishes the
# whole study in minutes; `replicate-cpu` is the width-128/4-layer/context-128 byte-level shape that
# reproduces the paper's ordering of the arms in well under an hour (docs/results/replicate-cpu.md).
# `gpt2-417m`: 25 layers of width 1024 give 417.6M untied weights (docs/method.md §1).
PRESETS: dict[str, dict] = {
    "demo": dict(vocab_size=256, n_layer=2, n_head=2, n_embd=64, block_size=64),
    "replicate-cpu": dict(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=128),
    "gpt2-124m": dict(vocab_size=50304, n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "gpt2-417m": dict(vocab_size=50304, n_layer=25, n_head=16, n_embd=1024, block_size=1024),
}


def preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weightless RMS norm computed in fp32, cast back to the input dtype (reference L46-49)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        # Persistent so that reference state dicts (which contain it) load strictly.
        self.register_buffer("inv_freq", inv_freq, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x [B, T, H, D] with the reference's half-split layout and sign convention."""
        T = x.size(1)
        t = torch.arange(T, device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.float())
        cos = freqs.cos()[None, :, None, :]
        sin = freqs.sin()[None, :, None, :]
        d = x.size(-1) // 2
        x1, x2 = x[..., :d].float(), x[..., d:].float()
        y1 = x1 * cos + x2 * sin
        y2 = -x1 * sin + x2 * cos
        return torch.cat([y1, y2], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.rotary = Rotary(config.head_dim, config.rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = self.rotary(q.view(B, T, self.n_head, self.head_dim))
        k = self.rotary(k.view(B, T, self.n_head, self.head_dim))
        v = v.view(B, T, self.n_head, self.head_dim)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)
        self.attn_scale = 1.0 / math.sqrt(2 * config.n_layer)
        self.eps = config.norm_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_scale * self.attn(rms_norm(x, self.eps))
        return x + self.mlp(rms_norm(x, self.eps))


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` against ``targets``, one slice of tokens at a time.

    The gradients are computed in the forward pass, slice by slice (softmax - one-hot, times the
    weight and the hidden slice), and only scaled by the incoming gradient in backward. So neither
    pass ever holds more than one slice's logits, and the matmuls are the plain path's three (no
    recompute). Under autocast the matmuls run in the autocast dtype, as ``lm_head`` would, and the
    softmax in fp32; the weight gradient is summed over slices in fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, chunk: int, need_grad: bool):
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_grad else None
        for s in range(0, h.size(0), chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk]
            valid = tc != -1
            safe = tc.clamp(min=0)  # ignored rows gather a real column, then count zero
            logits = F.linear(hc, weight).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += ((lse - logits.gather(1, safe[:, None])[:, 0]) * valid).sum()
            if need_grad:
                g = logits.sub_(lse[:, None]).exp_()  # softmax, in place over this slice's logits
                g[torch.arange(len(tc), device=g.device), safe] -= 1.0
                g = (g * valid[:, None]).to(weight.dtype)
                grad_h[s:s + chunk] = g @ weight
                grad_w += (g.t() @ hc).float()
        n_valid = (targets != -1).sum()
        if need_grad:
            ctx.save_for_backward(grad_h, grad_w, n_valid)
            ctx.weight_dtype = weight.dtype
        return total / n_valid  # all targets ignored -> nan, as F.cross_entropy's mean

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, n_valid = ctx.saved_tensors
        scale = grad_out / n_valid
        return (grad_h * scale).to(grad_h.dtype), (grad_w * scale).to(ctx.weight_dtype), None, None, None


def chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int = LOSS_CHUNK_TOKENS) -> torch.Tensor:
    """Mean cross-entropy (ignore_index -1) of the logits ``h @ weight.T`` without holding them whole.

    ``h`` [N, C] (the final-norm output), ``weight`` [V, C] (``lm_head.weight``), ``targets`` [N].
    """
    if chunk < 1:
        raise ValueError(f"loss chunk must be at least one token, got {chunk}")
    if h.dim() != 2 or targets.shape != h.shape[:1]:
        raise ValueError(f"chunked_cross_entropy wants h [N, C] and targets [N], got {tuple(h.shape)} and {tuple(targets.shape)}")
    need_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _ChunkedCrossEntropy.apply(h, weight, targets, chunk, need_grad)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Memory/time trade-offs that leave the numbers unchanged, so they are not part of GPTConfig
        # (whose fields identify a model): the training loop sets them from TrainConfig.
        self.activation_checkpointing = False
        self.loss_chunk_tokens = LOSS_CHUNK_TOKENS
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """N(0, std) everywhere; both c_proj weights N(0, std/sqrt(2*n_layer)) (reference L167-172)."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            s = std / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") else std
            p.normal_(0.0, s, generator=generator)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        return_hidden: bool = False,
    ):
        """Logits [B, T, V]; with ``targets`` instead ``(None, loss)``: the mean cross-entropy
        (ignore_index -1), computed in slices of ``loss_chunk_tokens`` tokens so that the full
        [B, T, V] logits never exist (the training path; evaluations call without targets).

        ``return_hidden=True`` returns (logits, hidden) where hidden is a list of n_layer+1
        residual-stream tensors: the embedding output, then every block's output (before the
        final norm). The evaluations read these.
        """
        x = self.transformer.wte(idx)
        hidden = [x] if return_hidden else None
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in self.transformer.h:
            # Recompute keeps only each block's input for backward, not its attention/MLP activations.
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False) if recompute else block(x)
            if hidden is not None:
                hidden.append(x)
        h = rms_norm(x, self.config.norm_eps)
        if targets is not None:
            return None, chunked_cross_entropy(h.view(-1, h.size(-1)), self.lm_head.weight, targets.reshape(-1),
                                               self.loss_chunk_tokens)
        logits = self.lm_head(h)
        if return_hidden:
            return logits, hidden
        return logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6*N for the weights plus the attention score/value matmuls."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size


WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def canonical_name(name: str) -> str:
    """A parameter name without the prefixes DDP (``module.``) and torch.compile (``_orig_mod.``) add."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix):], True
    return name


def clean_state_dict(state: dict) -> dict:
    """Strip DDP/compile prefixes (``module.``, ``_orig_mod.``, in any nesting) from keys."""
    return {canonical_name(k): v for k, v in state.items()}


def load_reference_state_dict(model: GPT, state: dict) -> None:
    """Load a reference-format state dict (keys as the reference, optionally prefixed).

    The ``rotary.inv_freq`` buffers are recomputed by us and need not be present. Missing or
    unexpected weights are an error naming them.
    """
    state = clean_state_dict(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("rotary.inv_freq")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(
            "state dict does not match the model: "
            + (f"missing {missing[:5]}{'...' if len(missing) > 5 else ''} " if missing else "")
            + (f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "")
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    model.load_state_dict({k: v for k, v in state.items()}, strict=False)
