"""Optimizers: AdamW (default) and Muon with the reference code's semantics (docs/method.md §7).

The training loop writes the schedule's value into every param group's ``lr`` each step. Each group
carries an ``lr_ratio`` that the step multiplies in: Muon's body matrices step at the schedule, the
embedding and head (inside the same optimizer, on Adam) at ``adamw_lr_ratio`` x the schedule — 10 in
the reference, because its ``Muon(lr=0.1*lr, adamw_lr=lr)`` call stores the ratio adamw_lr/lr and
the loop then overwrites ``lr``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.errors import TrainingError
from ..model.gpt import canonical_name
from .config import TrainConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 6  # the Dec 2024 - Jan 2025 Muon API the reference calls defaults to 6
MUON_ADAMW_LR_RATIO = 10.0
MUON_ADAMW_BETAS = (0.9, 0.95)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    """AdamW over every parameter, or Muon (body matrices) + internal Adam (wte, lm_head)."""
    check_compile_cache()  # torch's optimizers load its compiler, which opens its cache folder
    if cfg.optimizer == "adamw":
        # Every parameter of this model is a 2-D weight matrix, so all of them are decayed, as in the
        # reference (it has no decay/no-decay split either).
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                                 weight_decay=cfg.weight_decay, fused=device_type == "cuda")
    if cfg.optimizer == "muon":
        body, other = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                is_body = canonical_name(name).startswith("transformer.h.") and p.dim() == 2
                (body if is_body else other).append(p)
        # The reference passes adamw_wd = its --weight_decay, whose default (0) the outer loop uses;
        # cfg.weight_decay is AdamW's and does not apply here.
        return Muon(body, other, lr=cfg.lr, adamw_lr_ratio=MUON_ADAMW_LR_RATIO, adamw_betas=MUON_ADAMW_BETAS,
                    adamw_wd=0.0, bf16=device_type == "cuda")
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use adamw or muon")


def newton_schulz(g: torch.Tensor, steps: int = NS_STEPS, bf16: bool = False) -> torch.Tensor:
    """Approximately orthogonalise ``g`` (U S V^T -> U S' V^T, S' near 1) by the quintic Newton-Schulz iteration.

    Computed in bf16 when ``bf16`` (as the reference on CUDA), in fp32 otherwise; returned in g's dtype.
    """
    a, b, c = NS_COEFFS
    x = g.bfloat16() if bf16 else g.float()
    x = x / (x.norm() + 1e-7)
    transposed = g.size(0) > g.size(1)
    if transposed:  # iterate on the wide form: the Gram matrix x x^T is then the smaller one
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    if transposed:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on the 2-D body matrices, Adam on the rest (embedding, head), in one optimizer.

    Muon group (``lr_ratio`` 1): buf <- m*buf + g; u = g + m*buf (Nesterov) or buf; u = NS(u);
    p <- p - lr * sqrt(max(1, rows/cols)) * u. No weight decay.
    Adam group (``lr_ratio`` = adamw_lr_ratio), the reference's formula: m <- lerp(m, g, 1-b1),
    v <- lerp(v, g^2, 1-b2), p <- p * (1 - lr*wd) - lr * sqrt(1-b2^t)/(1-b1^t) * m / (eps + sqrt(v)).
    The step count is a Python int in each parameter's state, so the state dict round-trips exactly.
    """

    def __init__(self, muon_params, adamw_params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = NS_STEPS, adamw_lr_ratio: float = MUON_ADAMW_LR_RATIO,
                 adamw_betas: tuple[float, float] = MUON_ADAMW_BETAS, adamw_eps: float = 1e-8,
                 adamw_wd: float = 0.0, bf16: bool = False):
        muon_params, adamw_params = list(muon_params), list(adamw_params)
        bad = next((tuple(p.shape) for p in muon_params if p.dim() != 2), None)
        if bad is not None:
            raise ValueError(f"Muon orthogonalises 2-D matrices only; got a parameter of shape {bad}")
        groups = [
            dict(params=muon_params, kind="muon", lr_ratio=1.0),
            dict(params=adamw_params, kind="adamw", lr_ratio=float(adamw_lr_ratio)),
        ]
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, betas=tuple(adamw_betas),
                        eps=adamw_eps, weight_decay=adamw_wd, bf16=bf16)
        super().__init__([g for g in groups if g["params"]], defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon_step(group)
            else:
                self._adam_step(group)
        return loss

    def _muon_step(self, group: dict) -> None:
        lr, m = group["lr"] * group["lr_ratio"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buf = state["momentum_buffer"]
            buf.mul_(m).add_(p.grad)
            u = p.grad.add(buf, alpha=m) if group["nesterov"] else buf
            u = newton_schulz(u, group["ns_steps"], group["bf16"])
            p.add_(u, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)

    def _adam_step(self, group: dict) -> None:
        lr = group["lr"] * group["lr_ratio"]
        b1, b2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].lerp_(p.grad.square(), 1 - b2)
            update = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["eps"])
            if group["weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            p.add_(update, alpha=-lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t))


def check_compile_cache() -> None:
    """Refuse to train when TORCHINDUCTOR_CACHE_DIR is not a folder this process can write: torch's compiler
    makes it on first use (the optimizer loads the compiler, train.compile or not) and failed with a traceback
    after the model was built (a file there, a read-only folder)."""
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not cache:
        return
    folder = Path(cache)
    why = ("is not a folder" if folder.exists() and not folder.is_dir() else
           "is not writable" if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK) else None)
    if why is None and not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = f"cannot be made ({e.strerror})"
    if why is not None:
        raise TrainingError(f"TORCHINDUCTOR_CACHE_DIR={cache} {why}; torch's compiler keeps its cache there (and loads "
                            "it even with train.compile=false): point it at a writable folder, or unset it")
