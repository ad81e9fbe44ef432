"""The ``model`` config section: a preset name plus per-field overrides, and the GPTConfig it describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from ..core.config import SECTION, PosInt, doc
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

    def gpt_config(self, vocab_size: int | None = None) -> GPTConfig:
        """The GPTConfig this section describes; ``vocab_size`` (from the tokenizer) fills a gap."""
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset {self.preset!r} is not a preset; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[self.preset])
        for f in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            if getattr(self, f) is not None:
                values[f] = getattr(self, f)
        if vocab_size is not None and self.vocab_size is None:
            values["vocab_size"] = padded_vocab(vocab_size)
        try:
            return GPTConfig(**values)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def padded_vocab(n: int, multiple: int = 64) -> int:
    """Round a tokenizer's vocabulary up to a multiple of 64 (GPT-2's 50257 -> 50304)."""
    return ((n + multiple - 1) // multiple) * multiple
