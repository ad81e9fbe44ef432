"""Description lengths: the bits of the statistic each arm keeps of its lineage (issue 30), so a control's
benefit can be read against how much it inherits.

Every length is a code one could write and decode, not an entropy estimate, and is stated with its code:

- a count n in [0, N] costs ceil(log2(N + 1)) bits (fixed width: its range is known from the tensor's shape);
- the connectome's wiring costs its "structured" codec's payload (connectome.codec, per tensor: the file
  format the toolkit writes, its per-row/column alive counts included), signs or not;
- real numbers (low-rank factors, inherited weights) cost 16 bits each (fp16/bf16).

The same tensor shapes go with every arm, so the shapes themselves are never counted.
"""

from __future__ import annotations

import math
import weakref

import torch

from .codec import codec_bits
from .ternary import Connectome

FLOAT_BITS = 16


def count_bits(maximum: int) -> int:
    """Bits of a fixed-width code for a whole number in [0, maximum]."""
    return max(1, math.ceil(math.log2(maximum + 1)))


def alive_count_bits(conn: Connectome, names=None) -> int:
    """Every (named) tensor's alive count: what the random connectome keeps."""
    return sum(count_bits(t.numel()) for k, t in conn.ternary.items() if names is None or k in names)


def sign_count_bits(conn: Connectome) -> int:
    """Every tensor's number of positive survivors: what a control that draws signs at the tensor's ratio keeps."""
    return sum(count_bits(int((t != 0).sum())) for t in conn.ternary.values())


def degree_bits(conn: Connectome, rows: bool = True, cols: bool = True) -> int:
    """Every row's (a count in [0, columns]) and/or every column's (in [0, rows]) alive count, per tensor."""
    total = 0
    for t in conn.ternary.values():
        n_rows, n_cols = t.shape
        total += (n_rows * count_bits(n_cols) if rows else 0) + (n_cols * count_bits(n_rows) if cols else 0)
    return total


# per connectome, its tensors' structured payloads with and without signs: several arms of one lineage read them
_TENSOR_BITS: "weakref.WeakKeyDictionary[Connectome, dict]" = weakref.WeakKeyDictionary()


def _tensor_bits(conn: Connectome, signs: bool) -> dict[str, int]:
    cached = _TENSOR_BITS.setdefault(conn, {})
    if signs not in cached:
        coded = conn if signs else Connectome({k: t.abs() for k, t in conn.ternary.items()})
        cached[signs] = {k: int(row["structured"]) for k, row in codec_bits(coded)["tensors"].items()}
    return cached[signs]


def wiring_bits(conn: Connectome, names=None, signs: bool = True) -> int:
    """The structured codec's payload of the (named) tensors, with their signs or of the mask alone (the codec
    codes each tensor on its own, so a group's payload is the sum of its tensors')."""
    return sum(v for k, v in _tensor_bits(conn, signs).items() if names is None or k in names)


def low_rank_bits(conn: Connectome, rank: int) -> int:
    """Factors of rank min(r, rows, cols) per tensor at 16 bits, plus its alive count."""
    return sum(min(rank, *t.shape) * sum(t.shape) * FLOAT_BITS for t in conn.ternary.values()) + alive_count_bits(conn)


def weights_bits(n_weights: int) -> int:
    return n_weights * FLOAT_BITS


def alive(conn: Connectome) -> int:
    return sum(int((t != 0).sum()) for t in conn.ternary.values())


def other_numel(model_numel: int, conn: Connectome) -> int:
    """The model's weights outside the connectome's tensors (norms, and any 1-D parameters)."""
    return model_numel - sum(t.numel() for t in conn.ternary.values())


def model_numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
