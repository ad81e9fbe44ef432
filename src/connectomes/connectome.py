"""The connectome (method.md §3-5): masks, magnitude pruning, re-initialisation, controls, the training hook.

Vocabulary after open_lth: a *mask* is a boolean tensor per prunable weight (True = alive); a
*connectome* is a ternary {-1, 0, +1} tensor per prunable weight (mask x sign). Every 2-D parameter
is prunable, embeddings and ``lm_head`` included, as in the paper.

Pruning removes exactly ``floor(fraction * alive)`` weights. Ties in |w| are broken by flat index
(the lower index is pruned first), so the count is exact and the result deterministic even where
many weights share a value (e.g. embedding rows of bytes that never occur keep exactly +-c).
"""

from __future__ import annotations

import math

import torch

from .errors import CheckpointError


def prunable_names(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.dim() == 2]


def dense_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}


def _prune_order(values: torch.Tensor) -> torch.Tensor:
    """Indices of ``values`` from smallest to largest, ties in index order (stable sort)."""
    return torch.sort(values, stable=True).indices


@torch.no_grad()
def magnitude_prune(model: torch.nn.Module, masks: dict[str, torch.Tensor], fraction: float,
                    scope: str = "per_tensor") -> dict[str, torch.Tensor]:
    """New masks with the smallest-|w| alive weights removed; newly pruned weights are zeroed at once."""
    params = dict(model.named_parameters())
    new = {k: m.clone() for k, m in masks.items()}
    if scope == "per_tensor":
        for name, mask in new.items():
            flat_mask = mask.view(-1)
            alive_idx = flat_mask.nonzero().squeeze(1)
            k = math.floor(fraction * alive_idx.numel())
            if k == 0:
                continue
            mags = params[name].detach().view(-1)[alive_idx].abs().float()
            flat_mask[alive_idx[_prune_order(mags)[:k]]] = False
    elif scope == "global":
        names = [n for n in params if n in new]  # model order: the tie rule must not depend on dict order
        alive_idx = [new[n].view(-1).nonzero().squeeze(1) for n in names]
        mags = torch.cat([params[n].detach().view(-1)[i].abs().float().cpu() for n, i in zip(names, alive_idx)])
        owner = torch.cat([torch.full((len(i),), t, dtype=torch.int32) for t, i in enumerate(alive_idx)])
        k = math.floor(fraction * mags.numel())
        chosen = _prune_order(mags)[:k]
        offsets = torch.tensor([0] + [len(i) for i in alive_idx]).cumsum(0)
        for t, n in enumerate(names):
            pos = chosen[owner[chosen] == t] - offsets[t]
            new[n].view(-1)[alive_idx[t][pos.to(alive_idx[t].device)]] = False
    else:
        raise ValueError(f"unknown prune scope {scope!r}; use per_tensor or global")
    for name, mask in new.items():
        params[name].mul_(mask.to(params[name].dtype))
    return new


@torch.no_grad()
def reinit_signed_constant(model: torch.nn.Module, masks: dict[str, torch.Tensor], c: float = 0.02) -> None:
    """Survivors -> sign(w) * c, pruned -> 0. A survivor that is exactly 0 gets +c (it stays alive)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        sign = torch.where(p >= 0, 1.0, -1.0).to(p.dtype)
        p.copy_(sign * c * mask.to(p.dtype))


@torch.no_grad()
def rewind(model: torch.nn.Module, masks: dict[str, torch.Tensor], snapshot: dict[str, torch.Tensor]) -> None:
    """Survivors -> their values in ``snapshot`` (lottery-ticket rewinding), pruned -> 0."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        p.copy_(snapshot[name].to(p.device, p.dtype) * mask.to(p.dtype))


def _tensor_seed(seed: int, name: str) -> int:
    import hashlib

    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)


def h2(p: float) -> float:
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


class Connectome:
    """A ternary int8 tensor per prunable weight plus provenance metadata."""

    def __init__(self, ternary: dict[str, torch.Tensor], meta: dict | None = None):
        self.ternary = {k: v.to(torch.int8).cpu() for k, v in ternary.items()}
        self.meta = dict(meta or {})

    @classmethod
    def from_model(cls, model: torch.nn.Module, masks: dict[str, torch.Tensor], meta: dict | None = None) -> "Connectome":
        params = dict(model.named_parameters())
        tern = {}
        for name, mask in masks.items():
            sign = torch.where(params[name].detach().cpu() >= 0, 1, -1).to(torch.int8)
            tern[name] = sign * mask.cpu().to(torch.int8)
        return cls(tern, meta)

    def masks(self) -> dict[str, torch.Tensor]:
        return {k: v != 0 for k, v in self.ternary.items()}

    def _draw(self, seed: int, keep_positions: bool) -> "Connectome":
        out = {}
        for name, t in self.ternary.items():
            g = torch.Generator().manual_seed(_tensor_seed(seed, name))  # independent of tensor order
            flat = t.view(-1)
            alive = int((flat != 0).sum())
            new = torch.zeros_like(flat)
            pos = (flat != 0).nonzero().squeeze(1) if keep_positions else torch.randperm(flat.numel(), generator=g)[:alive]
            signs = torch.randint(0, 2, (alive,), generator=g).to(torch.int8) * 2 - 1
            new[pos] = signs
            out[name] = new.view_as(t)
        return Connectome(out, dict(self.meta))

    def random_like(self, seed: int) -> "Connectome":
        """RandomConnectome: per tensor exactly the same alive count at uniform random positions, random signs."""
        c = self._draw(seed, keep_positions=False)
        c.meta.update(control="random", control_seed=seed)
        return c

    def mask_only(self, seed: int) -> "Connectome":
        """The same wiring with random signs (separates the information in the mask from that in the signs)."""
        c = self._draw(seed, keep_positions=True)
        c.meta.update(control="mask_only", control_seed=seed)
        return c

    def check_fits(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, t in self.ternary.items():
            if name not in params:
                raise CheckpointError(f"connectome tensor {name} does not exist in the model; was it made for another architecture?")
            if tuple(params[name].shape) != tuple(t.shape):
                raise CheckpointError(f"connectome tensor {name} has shape {tuple(t.shape)} but the model's is "
                                      f"{tuple(params[name].shape)}; the connectome was made for another model size")
        missing = [n for n in prunable_names(model) if n not in self.ternary]
        if missing:
            raise CheckpointError(f"connectome has no tensor for {missing[0]} (and {len(missing) - 1} more); it does not fit this model")

    @torch.no_grad()
    def apply(self, model: torch.nn.Module, c: float = 0.02) -> None:
        """Set every prunable weight to ternary * c (refuses a connectome that does not fit)."""
        self.check_fits(model)
        params = dict(model.named_parameters())
        for name, t in self.ternary.items():
            p = params[name]
            p.copy_(t.to(p.device, p.dtype) * c)

    def density(self) -> dict[str, float]:
        d = {k: float((v != 0).sum()) / v.numel() for k, v in self.ternary.items()}
        d["total"] = sum(int((v != 0).sum()) for v in self.ternary.values()) / sum(v.numel() for v in self.ternary.values())
        return d

    def stats(self) -> dict:
        """Per tensor: shape, numel, alive, density, sign balance, entropy bounds in bits/weight."""
        rows = []
        for name, t in self.ternary.items():
            n = t.numel()
            alive = int((t != 0).sum())
            pos = int((t > 0).sum())
            d = alive / n
            bal = pos / alive if alive else 0.0
            rows.append({"name": name, "shape": list(t.shape), "numel": n, "alive": alive, "density": d,
                         "sign_balance": bal, "entropy_bits": h2(d) + d, "entropy_bits_measured_signs": h2(d) + d * h2(bal)})
        N = sum(r["numel"] for r in rows)
        A = sum(r["alive"] for r in rows)
        total = {"numel": N, "alive": A, "density": A / N if N else 0.0,
                 "sign_balance": sum(int((t > 0).sum()) for t in self.ternary.values()) / A if A else 0.0,
                 "entropy_bits": sum(r["entropy_bits"] * r["numel"] for r in rows) / N if N else 0.0,
                 "entropy_bits_measured_signs": sum(r["entropy_bits_measured_signs"] * r["numel"] for r in rows) / N if N else 0.0}
        return {"tensors": rows, "total": total}

    def equal(self, other: "Connectome") -> bool:
        return self.ternary.keys() == other.ternary.keys() and all(torch.equal(self.ternary[k], other.ternary[k]) for k in self.ternary)


class ParamMask:
    """The training hook of method.md §4: grads x mask before clipping, weights x mask after each step.

    One fused ``torch._foreach_mul_`` each. Parameters are looked up by name on the raw model (not a
    DDP or compiled wrapper), so the masks live outside any compiled graph and are updated in place.
    """

    def __init__(self, masks: dict[str, torch.Tensor]):
        self._masks = {k: v.bool() for k, v in masks.items()}
        self._float: dict[str, torch.Tensor] | None = None
        self._device = None

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self._masks

    def to(self, device) -> "ParamMask":
        self._device = torch.device(device)
        self._float = None
        return self

    def load(self, masks: dict[str, torch.Tensor]) -> None:
        if masks.keys() != self._masks.keys() or any(masks[k].shape != self._masks[k].shape for k in masks):
            raise CheckpointError("the checkpoint's masks do not match this run's tensors")
        self._masks = {k: v.bool() for k, v in masks.items()}
        self._float = None

    def _resolve(self, model: torch.nn.Module):
        params = dict(model.named_parameters())
        missing = [k for k in self._masks if k not in params]
        if missing:
            raise CheckpointError(f"mask for {missing[0]} has no parameter in the model")
        ps = [params[k] for k in self._masks]
        if self._float is None or next(iter(self._float.values())).device != ps[0].device:
            self._float = {k: m.to(ps[0].device, ps[0].dtype) for k, m in self._masks.items()}
        return ps, list(self._float.values())

    @torch.no_grad()
    def apply_to_grads(self, model: torch.nn.Module) -> None:
        ps, ms = self._resolve(model)
        pairs = [(p.grad, m) for p, m in zip(ps, ms) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    @torch.no_grad()
    def apply_to_weights(self, model: torch.nn.Module) -> None:
        ps, ms = self._resolve(model)
        torch._foreach_mul_(ps, ms)
