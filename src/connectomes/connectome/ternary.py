"""The connectome (docs/method.md §3-5): a ternary {-1, 0, +1} tensor per prunable weight (mask x sign),
its random and mask-only controls, and its statistics.

Sign rule. A survivor whose weight is exactly 0 (or -0.0) counts as positive: ``Connectome.from_model``
records +1, as ``masks.reinit_signed_constant`` gives it +c, so the two always agree.
"""

from __future__ import annotations

import hashlib
import math

import torch

from ..core.errors import CheckpointError
from .masks import prunable_names


def _tensor_seed(seed: int, name: str) -> int:
    """A generator seed per (seed, tensor name): control draws do not depend on tensor order."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)


def h2(p: float) -> float:
    """Binary entropy in bits."""
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


class Connectome:
    """A ternary int8 tensor {-1, 0, +1} per prunable weight (on the CPU) plus provenance metadata."""

    def __init__(self, ternary: dict[str, torch.Tensor], meta: dict | None = None):
        self.ternary = {k: v.detach().to("cpu", torch.int8).contiguous() for k, v in ternary.items()}
        bad = next((k for k, v in self.ternary.items() if v.numel() and int(v.abs().max()) > 1), None)
        if bad is not None:
            raise ValueError(f"connectome tensor {bad} has values outside {{-1, 0, +1}}")
        self.meta = dict(meta or {})

    @classmethod
    def from_model(cls, model: torch.nn.Module, masks: dict[str, torch.Tensor], meta: dict | None = None) -> "Connectome":
        """Mask x sign of the model's current weights (an exactly-zero survivor counts as +1)."""
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
            g = torch.Generator().manual_seed(_tensor_seed(seed, name))
            flat = t.view(-1)
            alive = int((flat != 0).sum())
            if keep_positions:
                pos = (flat != 0).nonzero().squeeze(1)
            else:
                pos = torch.randperm(flat.numel(), generator=g)[:alive]
            signs = torch.randint(0, 2, (alive,), generator=g).to(torch.int8) * 2 - 1
            new = torch.zeros_like(flat)
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
        """Raise CheckpointError unless the connectome has exactly the model's prunable tensors and shapes."""
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
        """Alive fraction per tensor, and over all weights under the key "total"."""
        alive = {k: int((v != 0).sum()) for k, v in self.ternary.items()}
        d = {k: alive[k] / v.numel() for k, v in self.ternary.items()}
        d["total"] = sum(alive.values()) / sum(v.numel() for v in self.ternary.values())
        return d

    def stats(self) -> dict:
        """Per tensor and in total: shape, numel, alive, density, sign balance, entropy in bits/weight.

        ``entropy_bits`` = H(d) + d, the i.i.d. Shannon bound with even signs (docs/method.md §5);
        ``entropy_bits_measured_signs`` = H(d) + d * H(fraction positive), the bound for a code that
        also uses the measured sign balance (slightly lower).
        """
        rows = []
        for name, t in self.ternary.items():
            n = t.numel()
            alive = int((t != 0).sum())
            pos = int((t > 0).sum())
            d = alive / n
            bal = pos / alive if alive else 0.0
            rows.append({"name": name, "shape": list(t.shape), "numel": n, "alive": alive, "positive": pos,
                         "density": d, "sign_balance": bal, "entropy_bits": h2(d) + d,
                         "entropy_bits_measured_signs": h2(d) + d * h2(bal)})
        N = sum(r["numel"] for r in rows)
        A = sum(r["alive"] for r in rows)
        P = sum(r["positive"] for r in rows)

        def weighted(key: str) -> float:
            return sum(r[key] * r["numel"] for r in rows) / N if N else 0.0

        total = {"numel": N, "alive": A, "positive": P, "density": A / N if N else 0.0,
                 "sign_balance": P / A if A else 0.0, "entropy_bits": weighted("entropy_bits"),
                 "entropy_bits_measured_signs": weighted("entropy_bits_measured_signs")}
        return {"tensors": rows, "total": total}

    def equal(self, other: "Connectome") -> bool:
        """Same tensor names, shapes and values (metadata is not compared)."""
        return self.ternary.keys() == other.ternary.keys() and all(
            torch.equal(self.ternary[k], other.ternary[k]) for k in self.ternary)
