"""The inner loop's arms (docs/method.md §4), declared once: config validation, develop and the report read this.

- ``connectome``: weights = connectome x c; only alive weights train.
- ``random``:     per tensor a uniformly random mask with exactly the connectome's alive count and
                  random signs (RandomConnectome); only alive weights train.
- ``dense``:      the usual N(0, 0.02) init; every weight trains (NoConnectome).
- ``mask_only``:  the connectome's mask with random signs (wiring without the signs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Offsets of the random arms' generators, so that arm draws never share a stream with model init.
_RANDOM_SALT = 1_000_003
_MASK_ONLY_SALT = 2_000_003


@dataclass(frozen=True)
class Arm:
    name: str
    label: str  # the paper's name, used in the report
    color: str  # the arm's colour in every figure
    # connectome -> the connectome this arm starts from, given the seed; None = dense (no connectome)
    derive: Callable | None
    style: str = "-"  # its line style where arms share a colour (the shapes figure colours by shape)

    @property
    def needs_connectome(self) -> bool:
        return self.derive is not None


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("connectome", "Connectome", "#1b9e77", lambda conn, seed: conn, "-"),
    Arm("random", "RandomConnectome", "#d95f02", lambda conn, seed: conn.random_like(seed=_RANDOM_SALT + seed), "--"),
    Arm("dense", "NoConnectome", "#7570b3", None, ":"),
    Arm("mask_only", "MaskOnly", "#e7298a", lambda conn, seed: conn.mask_only(seed=_MASK_ONLY_SALT + seed), "-."),
)}


def label(name: str) -> str:
    """The report's name for an arm (an arm unknown to this version keeps its folder name)."""
    return ARMS[name].label if name in ARMS else name


def color(name: str) -> str | None:
    return ARMS[name].color if name in ARMS else None


def style(name: str) -> str:
    return ARMS[name].style if name in ARMS else "-"
