"""Load any checkpoint as a model: a toolkit step folder, a Hugging Face folder (ours or the authors') or a
reference-format state-dict file, plus the tokenizer it records. Nothing here executes code from a file:
weights are safetensors or ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..core.errors import CheckpointError
from ..core.integrity import sha256_file
from ..data.tokenizers import load_tokenizer
from ..model.gpt import GPT, GPTConfig, clean_state_dict, load_reference_state_dict
from ..training.checkpoint import STATE, WEIGHTS, load_weights, read_state, verify_step
from .hf import is_hf_folder, load_hf_folder


def weights_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        return path
    # an HF folder in the authors' layout may hold pytorch_model.bin instead
    return path / WEIGHTS if (path / WEIGHTS).exists() or not (path / "pytorch_model.bin").exists() else path / "pytorch_model.bin"


def verified_weights_sha256(path: Path) -> str:
    """The sha256 of a checkpoint's weights file; for one of our step folders, after checking the
    whole folder against its manifest (a folder without state.json, e.g. a Hugging Face one, or a
    bare weights file has no manifest and is only hashed)."""
    path = Path(path)
    if path.is_dir() and (path / STATE).exists():
        return verify_step(path)[WEIGHTS]
    return sha256_file(weights_file(path))


def infer_config(state: dict[str, torch.Tensor], n_head: int | None = None, block_size: int = 1024) -> GPTConfig:
    """Model shape from a reference-format state dict (heads default to 64-wide, as GPT-2)."""
    try:
        vocab, n_embd = state["transformer.wte.weight"].shape
    except KeyError:
        raise CheckpointError("state dict has no transformer.wte.weight; it is not a GPT in the reference format") from None
    layers = {int(k.split(".")[2]) for k in state if k.startswith("transformer.h.")}
    n_layer = max(layers) + 1 if layers else 0
    return GPTConfig(vocab_size=vocab, n_layer=n_layer, n_head=n_head or max(1, n_embd // 64), n_embd=n_embd,
                     block_size=block_size)


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} cannot be loaded safely ({type(e).__name__}); only tensors and plain containers are "
            "accepted (torch.load weights_only=True) — convert it to safetensors"
        ) from None
    if isinstance(obj, dict):
        for key in ("model_state_dict", "weights", "model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise CheckpointError(f"{path} does not contain a state dict")


def load_model(path: str | Path, device: str = "cpu", *, n_head: int | None = None,
               verify: bool = True) -> tuple[GPT, dict]:
    """A model from a toolkit step folder, a Hugging Face folder or a reference-format state-dict file, plus its info.

    A step folder is checked against its manifest first (``verify=False`` when the caller just did,
    see :func:`verified_weights_sha256`). ``info`` carries ``tokenizer`` (name), ``data_dir``, ``step``, ``config`` and ``model_config``.
    """
    path = Path(path)
    if is_hf_folder(path):  # a Hugging Face folder, ours or the authors' (connectomes.hf)
        model, info = load_hf_folder(path)
        return model.to(device).eval(), info
    if path.is_dir():
        if verify:
            verify_step(path)
        state = read_state(path)
        cfg = GPTConfig(**state["model_config"])
        model = GPT(cfg)
        load_reference_state_dict(model, load_weights(path))
        info = dict(state)
        info.setdefault("tokenizer", "gpt2")
        info["path"] = str(path)
    elif path.is_file():
        sd = clean_state_dict(_read_state_dict_file(path))
        cfg = infer_config(sd, n_head=n_head)
        model = GPT(cfg)
        try:
            load_reference_state_dict(model, sd)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        info = {"tokenizer": "gpt2", "model_config": cfg.to_dict(), "path": str(path), "format": "reference"}
    else:
        raise CheckpointError(f"checkpoint {path} does not exist; pass a step_XXXXXX folder or a .safetensors/.pt file")
    return model.to(device).eval(), info


def load_tokenizer_for(info: dict):
    data_dir = info.get("tokenizer_dir") or info.get("data_dir")  # an HF folder holds its own tokenizer.json
    return load_tokenizer(info["tokenizer"], data_dir=Path(data_dir) if data_dir else None,
                          gpt2_bpe_file=info.get("gpt2_bpe_file") or None)
