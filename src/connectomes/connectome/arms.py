"""The inner loop's arms (docs/method.md §4), declared once: config validation, develop, `develop --help` and the
report read this. Each arm says what it keeps of its lineage's evolution and what it redraws, and how many bits
that costs (connectome.genome), so every control reads as "this much inheritance, this much benefit".

Fixed arms live in ``ARMS``; parameterised families (``transplant:<group>``, ``lowrank:<r>``) in ``FAMILIES``,
resolved by :func:`get`. A connectome arm's ``derive(connectome, seed)`` gives the ternary tensors it starts
from (weights = ternary x c; only alive weights train); ``weights_from`` names trained evolve weights it starts
from instead of constants ("connectome": the trained weights the connectome was cut from; "first":
generation 0's trained dense weights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from . import controls, genome
from ..core.errors import ConfigError
from .ternary import Connectome

# Offsets of the random arms' generators, so that arm draws never share a stream with model init.
_RANDOM_SALT = 1_000_003
_MASK_ONLY_SALT = 2_000_003
_REWIRED_SALT = 3_000_003
_ROWS_SALT = 4_000_003
_COLS_SALT = 5_000_003


@dataclass(frozen=True)
class Arm:
    name: str
    label: str  # the report's name
    color: str  # the arm's colour in every figure
    # connectome, seed -> the ternary connectome this arm starts from; None = no mask (every weight trains)
    derive: Callable[[Connectome, int], Connectome] | None
    style: str = "-"  # its line style where arms share a colour (the shapes figure colours by shape)
    keeps: str = ""  # what it keeps of the lineage (help and report)
    redraws: str = ""  # what it draws afresh per seed
    # connectome, weights in the model -> bits of what it keeps (connectome.genome); None = 0 bits
    bits: Callable[[Connectome, int], int] | None = None
    weights_from: str | None = None  # None | "connectome" | "first" (see the module docstring)

    @property
    def needs_connectome(self) -> bool:
        """Starts from a ternary mask (only alive weights train)."""
        return self.derive is not None

    @property
    def needs_lineage(self) -> bool:
        """Inherits anything from an evolution (a mask or trained weights): developed once per lineage."""
        return self.derive is not None or self.weights_from is not None

    def description_bits(self, conn: Connectome, model_numel: int) -> int:
        return 0 if self.bits is None else int(self.bits(conn, model_numel))


def _signs_redrawn(what: str) -> str:
    return f"{what}; signs drawn with each tensor's exact number of + and -"


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("connectome", "Connectome", "#1b9e77", lambda conn, seed: conn, "-",
        "the whole connectome: wiring and signs", "nothing", lambda conn, n: genome.wiring_bits(conn)),
    Arm("random", "RandomConnectome", "#d95f02", lambda conn, seed: conn.random_like(seed=_RANDOM_SALT + seed), "--",
        "each tensor's alive count", "positions uniform, signs 50/50", lambda conn, n: genome.alive_count_bits(conn)),
    Arm("dense", "NoConnectome", "#7570b3", None, ":", "nothing (the usual N(0, 0.02) init)", "every weight"),
    Arm("mask_only", "MaskOnly", "#e7298a", lambda conn, seed: conn.mask_only(seed=_MASK_ONLY_SALT + seed), "-.",
        "the wiring", "signs 50/50", lambda conn, n: genome.wiring_bits(conn, signs=False)),
    Arm("sign_flipped", "SignFlipped", "#a6761d", lambda conn, seed: controls.sign_flipped(conn), "-.",
        "the wiring with every sign inverted (an exact symmetry of a bias-free pre-LayerNorm model: it trains to "
        "the connectome's numbers, a check rather than a control)", "nothing", lambda conn, n: genome.wiring_bits(conn)),
    Arm("rewired", "Rewired", "#66a61e", lambda conn, seed: controls.rewired(conn, _REWIRED_SALT + seed), "--",
        "every row's and every column's alive count (degree sequences)",
        _signs_redrawn("positions by degree-preserving edge swaps"),
        lambda conn, n: genome.degree_bits(conn) + genome.sign_count_bits(conn)),
    Arm("rows_kept", "RowsKept", "#1f78b4", lambda conn, seed: controls.rows_kept(conn, _ROWS_SALT + seed), "--",
        "every row's alive count (a unit's inputs)", _signs_redrawn("positions uniform within each row"),
        lambda conn, n: genome.degree_bits(conn, cols=False) + genome.sign_count_bits(conn)),
    Arm("cols_kept", "ColsKept", "#a6cee3", lambda conn, seed: controls.cols_kept(conn, _COLS_SALT + seed), "--",
        "every column's alive count (an input's outputs)", _signs_redrawn("positions uniform within each column"),
        lambda conn, n: genome.degree_bits(conn, rows=False) + genome.sign_count_bits(conn)),
    Arm("inherit", "Inherit", "#e6ab02", lambda conn, seed: conn, "-",
        "the trained weights the connectome was cut from, on its wiring", "nothing",
        lambda conn, n: genome.wiring_bits(conn) + genome.weights_bits(genome.alive(conn) + genome.other_numel(n, conn)),
        weights_from="connectome"),
    Arm("inherit_dense", "InheritDense", "#666666", None, ":",
        "generation 0's trained dense weights (pre-train, then train)", "nothing",
        lambda conn, n: genome.weights_bits(n), weights_from="first"),
)}

# Tensor groups a transplant can name; "blocksA-B" (or "blocksA") names a range of transformer blocks.
GROUPS: dict[str, Callable[[str], bool]] = {
    "embeddings": lambda name: ".wte." in name or ".wpe." in name,
    "attention": lambda name: ".attn." in name,
    "mlp": lambda name: ".mlp." in name,
    "lm_head": lambda name: name.startswith("lm_head."),
    # the vocabulary's two matrices together: what reads tokens in and what writes them out
    "io": lambda name: ".wte." in name or ".wpe." in name or name.startswith("lm_head."),
}
_BLOCKS = re.compile(r"blocks(\d+)(?:-(\d+))?")


def group_tensors(group: str, names) -> set[str]:
    """The tensor names of ``group`` among ``names``; a group that names none is refused."""
    m = _BLOCKS.fullmatch(group)
    if m:
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        chosen = {n for n in names if (b := re.search(r"\.h\.(\d+)\.", n)) and lo <= int(b[1]) <= hi}
    else:
        chosen = {n for n in names if GROUPS[group](n)}
    if not chosen:
        raise ConfigError(f"develop.arms: transplant group {group!r} names no tensor of this model; "
                          f"blocks are counted from 0")
    return chosen


_TRANSPLANT_COLORS = ["#b15928", "#ff7f00", "#fb9a99", "#fdbf6f", "#8dd3c7", "#bc80bd", "#ffed6f"]
_LOW_RANK_COLORS = ["#3f007d", "#6a3d9a", "#9e79c4", "#cab2d6"]  # rank 1, 2-7, 8-31, 32+


def _shade(palette: list[str], key: str) -> str:
    """A family member's colour: the named groups in their order, block ranges after them."""
    order = list(GROUPS)
    return palette[order.index(key) if key in order else len(order) + sum(map(ord, key)) % (len(palette) - len(order))]


def _transplant(group: str) -> Arm:
    def derive(conn: Connectome, seed: int) -> Connectome:
        keep = group_tensors(group, conn.ternary)
        return controls.transplant(conn, conn.random_like(seed=_RANDOM_SALT + seed), keep)

    def bits(conn: Connectome, n: int) -> int:
        keep = group_tensors(group, conn.ternary)
        return genome.wiring_bits(conn, keep) + genome.alive_count_bits(conn, set(conn.ternary) - keep)

    return Arm(f"transplant:{group}", f"Transplant[{group}]", _shade(_TRANSPLANT_COLORS, group), derive, "-.",
               f"the connectome in the {group} tensors", "elsewhere the random connectome's draw of the same seed", bits)


def _low_rank(rank: str) -> Arm:
    r = int(rank)
    return Arm(f"lowrank:{r}", f"LowRank[{r}]", _LOW_RANK_COLORS[min(r.bit_length() // 2, 3)], lambda conn, seed: controls.low_rank(conn, r), "--",
               f"a rank-{r} genome per tensor (fp16 factors of the ternary matrix; mask = its top-k, exactly the "
               "connectome's alive count; signs = its signs)", "nothing (deterministic)",
               lambda conn, n: genome.low_rank_bits(conn, r))


def _group_ok(group: str) -> bool:
    return group in GROUPS or _BLOCKS.fullmatch(group) is not None


# family prefix -> (parameter accepted, arm for it, the parameter's form in messages)
FAMILIES: dict[str, tuple[Callable[[str], bool], Callable[[str], Arm], str]] = {
    "transplant": (_group_ok, _transplant, "<" + "|".join(GROUPS) + "|blocksA-B>"),
    "lowrank": (lambda p: p.isdigit() and 1 <= int(p) <= 4096, _low_rank, "<rank 1..4096>"),
}


def known(name: str) -> bool:
    if name in ARMS:
        return True
    family, _, param = name.partition(":")
    return family in FAMILIES and FAMILIES[family][0](param)


def get(name: str) -> Arm:
    """The arm called ``name`` (a fixed arm or a family member such as ``transplant:mlp``)."""
    if name in ARMS:
        return ARMS[name]
    if not known(name):
        raise KeyError(f"unknown arm {name!r}; choose one of {', '.join(choices())}")
    family, _, param = name.partition(":")
    return FAMILIES[family][1](param)


def choices() -> list[str]:
    """Every arm name as a message or help text lists it: the fixed arms, then each family's form."""
    return list(ARMS) + [f"{f}:{form}" for f, (_, _, form) in FAMILIES.items()]


def help_lines() -> list[str]:
    """One line per arm (and family): what it keeps and what it redraws, for `develop --help`."""
    examples = [get(n) for n in ARMS] + [get("transplant:mlp"), get("lowrank:4")]
    return [f"  {a.name:<16} keeps {a.keeps}; redraws {a.redraws}" for a in examples] + \
        ["  (transplant:<group> takes " + FAMILIES["transplant"][2] + "; lowrank:<r> any rank)"]


def label(name: str) -> str:
    """The report's name for an arm (an arm unknown to this version keeps its folder name)."""
    return get(name).label if known(name) else name


def color(name: str) -> str | None:
    return get(name).color if known(name) else None


def style(name: str) -> str:
    return get(name).style if known(name) else "-"
