"""The ``model`` config section: a preset name plus per-field overrides, and the GPTConfig it describes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from ..core.axes import axis_field
from ..core.config import SECTION, PosInt, comma_list, doc
from ..core.errors import ConfigError
from .gpt import PRESETS, GPTConfig


@dataclass
class ModelConfig:
    """Model shape: a preset name plus optional per-field overrides (docs/method.md §1)."""

    __pydantic_config__ = SECTION
    preset: Annotated[Literal[tuple(PRESETS)], doc("model size preset (shapes in model.PRESETS)")] = "demo"
    vocab_size: Annotated[PosInt | None, doc("override; default = tokenizer vocabulary padded to a multiple of 64")] = None
    n_layer: Annotated[PosInt | None, doc("override the preset's number of blocks")] = None
    n_head: Annotated[PosInt | None, doc("override the preset's attention heads")] = None
    n_embd: Annotated[PosInt | None, doc("override the preset's width")] = None
    block_size: Annotated[PosInt | None, doc("override the preset's context length")] = None
    shapes: Annotated[comma_list(str), doc("model shapes to sweep, LAYERSxWIDTH (e.g. 4x128,8x128,4x256): each evolves "
                                           "its own lineages and every arm develops at its own shape; heads keep the "
                                           "model's head width; empty = the one shape above")] = axis_field("shape")

    def gpt_config(self, vocab_size: int | None = None, shape: str | None = None) -> GPTConfig:
        """The GPTConfig this section describes, at ``shape`` (a model.shapes entry) when given; ``vocab_size``
        (from the tokenizer) fills a gap."""
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset {self.preset!r} is not a preset; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[self.preset])
        for f in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            if getattr(self, f) is not None:
                values[f] = getattr(self, f)
        if vocab_size is not None and self.vocab_size is None:
            values["vocab_size"] = padded_vocab(vocab_size)
        if shape is not None:
            values.update(shape_fields(shape, values["n_embd"] // values["n_head"]))
        try:
            return GPTConfig(**values)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def shape_fields(shape: str, head_dim: int) -> dict[str, int]:
    """n_layer, n_embd and n_head of a shape "LAYERSxWIDTH", heads of ``head_dim`` channels each."""
    m = re.fullmatch(r"(\d+)x(\d+)", str(shape))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"model.shapes entry {shape!r} must look like LAYERSxWIDTH, e.g. 4x128")
    layers, width = int(m.group(1)), int(m.group(2))
    if width % head_dim:
        raise ConfigError(f"model.shapes entry {shape!r}: width {width} is not a multiple of the head width {head_dim}")
    return {"n_layer": layers, "n_embd": width, "n_head": width // head_dim}


def padded_vocab(n: int, multiple: int = 64) -> int:
    """Round a tokenizer's vocabulary up to a multiple of 64 (GPT-2's 50257 -> 50304)."""
    return ((n + multiple - 1) // multiple) * multiple
