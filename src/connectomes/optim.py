"""Optimizers: AdamW (default) and Muon with the reference code's semantics (reference-code-notes §6).

The training loop writes the schedule's value into every param group's ``lr`` each step. Each group
carries an ``lr_ratio``: Muon's body matrices step at the schedule, the embedding and head (inside the
same optimizer, on Adam) at ``adamw_lr_ratio`` x the schedule — 10 in the reference, because its
`Muon(lr=0.1*lr, adamw_lr=lr)` call stores the ratio and the loop then overwrites `lr`.
"""

from __future__ import annotations

import torch

from .config import TrainConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        # Every parameter of this model is a 2-D weight matrix, so all of them are decayed (nanoGPT's rule).
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                                 weight_decay=cfg.weight_decay, fused=device_type == "cuda")
    if cfg.optimizer == "muon":
        body, other = [], []
        for name, p in model.named_parameters():
            (body if name.startswith("transformer.h.") and p.dim() == 2 else other).append(p)
        return Muon(body, other, lr=cfg.lr, adamw_betas=(cfg.beta1, cfg.beta2), adamw_wd=0.0,
                    bf16=device_type == "cuda")
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def newton_schulz(g: torch.Tensor, steps: int, bf16: bool) -> torch.Tensor:
    """Approximate orthogonalisation U V^T of g by the quintic Newton-Schulz iteration."""
    a, b, c = NS_COEFFS
    x = g.bfloat16() if bf16 else g.float()
    x = x / (x.norm() + 1e-7)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    if transposed:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on the 2-D body matrices, Adam on the rest (embedding, head), one optimizer.

    Muon update: buf <- m*buf + g; u = g + m*buf (Nesterov); u = NS(u); u *= sqrt(max(1, rows/cols));
    p <- p - lr*u. No weight decay on Muon parameters; the Adam part has decoupled decay ``adamw_wd``.
    Newton-Schulz runs in bf16 on CUDA (as the reference) and in fp32 elsewhere.
    """

    def __init__(self, muon_params, adamw_params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 6, adamw_lr_ratio: float = 10.0, adamw_betas=(0.9, 0.95), adamw_eps: float = 1e-8,
                 adamw_wd: float = 0.0, bf16: bool = False):
        groups = [
            dict(params=list(muon_params), kind="muon", lr_ratio=1.0),
            dict(params=list(adamw_params), kind="adamw", lr_ratio=adamw_lr_ratio),
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
            lr = group["lr"] * group["lr_ratio"]
            if group["kind"] == "muon":
                m = group["momentum"]
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
                    u *= max(1.0, p.size(0) / p.size(1)) ** 0.5
                    p.add_(u, alpha=-lr)
            else:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if "step" not in state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] += 1
                    t = state["step"].item()
                    state["exp_avg"].lerp_(p.grad, 1 - b1)
                    state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denom = (state["exp_avg_sq"] / (1 - b2 ** t)).sqrt_().add_(group["eps"])
                    if group["weight_decay"]:
                        p.mul_(1 - lr * group["weight_decay"])
                    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** t))
        return loss
