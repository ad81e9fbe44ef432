"""Load any checkpoint as a model: a toolkit step folder, a Hugging Face folder (ours or the authors') or a
reference-format state-dict file, plus the tokenizer it records. Nothing here executes code from a file:
weights are safetensors or ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import CheckpointError
from ..core.integrity import sha256_file
from ..core.readers import read_safetensors, read_torch
from ..data.tokenizers import load_tokenizer
from ..model.gpt import GPT, GPTConfig, check_memory, clean_state_dict, load_reference_state_dict
from ..training.checkpoint import STATE, WEIGHTS, load_weights, read_state, verify_step
from .hf import is_hf_folder, load_hf_folder, weights_sha256

REMEDY = "pass a step_XXXXXX folder, a Hugging Face folder or a .safetensors/.pt state dict"


def verified_weights_sha256(path: Path) -> str:
    """The digest of a checkpoint's weights; for one of our step folders, after checking the whole folder
    against its manifest (a Hugging Face folder, sharded or not, or a bare weights file has no manifest and
    is only hashed)."""
    path = Path(path)
    if path.is_dir() and (path / STATE).exists():
        return verify_step(path)[WEIGHTS]
    if is_hf_folder(path):
        return weights_sha256(path)
    if path.is_dir():
        if path.name.startswith("step_") or (path / "manifest.json").exists():
            # a step folder whose state.json is gone: what is missing is that file, said as such
            raise CheckpointError(f"{path / STATE} is missing: {path} is neither a whole step folder nor a Hugging "
                                  f"Face folder; if it is a step folder it is damaged: delete it and re-run the same command")
        raise CheckpointError(not_a_step(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; {REMEDY}")
    return sha256_file(path)


def not_a_step(folder: Path) -> str:
    """Why a folder without a state.json is no checkpoint, naming the step folders inside it (an arm's or a
    unit's folder holds them under steps/)."""
    steps = sorted(p for p in Path(folder).rglob("step_*") if (p / STATE).is_file())
    if not steps:
        return f"{folder} is a folder but not a step (no {STATE}) and holds no step folders; {REMEDY}"
    shown = ", ".join(str(p.relative_to(folder)) for p in steps[:8]) + (f" and {len(steps) - 8} more" if len(steps) > 8 else "")
    return f"{folder} is not a step but a folder of {len(steps)} step{'s' * (len(steps) != 1)}: {shown}; pass one, e.g. {steps[-1]}"


def infer_config(state: dict[str, torch.Tensor], n_head: int | None = None, block_size: int = 1024) -> GPTConfig:
    """Model shape from a reference-format state dict (heads default to 64-wide, as GPT-2)."""
    wte = state.get("transformer.wte.weight")
    if not isinstance(wte, torch.Tensor) or wte.dim() != 2:
        raise CheckpointError("state dict has no 2-D transformer.wte.weight; it is not a GPT in the reference format")
    vocab, n_embd = wte.shape
    layers = {int(k.split(".")[2]) for k in state if isinstance(k, str) and k.startswith("transformer.h.")
              and k.count(".") >= 3 and k.split(".")[2].isdigit()}
    n_layer = max(layers) + 1 if layers else 0
    try:
        return GPTConfig(vocab_size=vocab, n_layer=n_layer, n_head=n_head or max(1, n_embd // 64), n_embd=n_embd,
                         block_size=block_size)
    except ValueError as e:
        raise CheckpointError(f"the state dict's shape is not a GPT this toolkit builds: {e}") from None


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path, remedy=REMEDY)[0]
    obj = read_torch(path, remedy="only tensors and plain containers are accepted (torch.load weights_only=True); "
                                  "convert it to safetensors")
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
    if is_hf_folder(path):  # a Hugging Face folder, ours or the authors' (connectomes.io.hf)
        model, info = load_hf_folder(path)
        return model.to(device).eval(), info
    if path.is_dir():
        if verify:
            verify_step(path)
        state = read_state(path)
        cfg = _step_config(path, state)
        model = GPT(cfg)
        try:
            load_reference_state_dict(model, load_weights(path))
        except ValueError as e:
            raise CheckpointError(f"{path / WEIGHTS}: {e}") from None
        info = dict(state)
        info.setdefault("tokenizer", "gpt2")
        info["path"] = str(path)
    elif path.is_file():
        sd = _read_state_dict_file(path)
        if not all(isinstance(k, str) for k in sd):
            raise CheckpointError(f"{path} holds a mapping whose keys are not weight names; it is not a state dict")
        sd = clean_state_dict(sd)
        cfg = infer_config(sd, n_head=n_head)
        _check_memory(cfg, path)
        model = GPT(cfg)
        try:
            load_reference_state_dict(model, sd)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        info = {"tokenizer": "gpt2", "model_config": cfg.to_dict(), "path": str(path), "format": "reference"}
    else:
        raise CheckpointError(f"checkpoint {path} does not exist; pass a step_XXXXXX folder or a .safetensors/.pt file")
    return model.to(device).eval(), info


def _check_memory(cfg: GPTConfig, path: Path) -> None:
    try:
        check_memory(cfg, f"the model of {path}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def _step_config(path: Path, state: dict) -> GPTConfig:
    """The model shape a step folder's state.json records, checked before anything is allocated."""
    try:
        cfg = GPTConfig(**state["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / STATE} records no usable model_config ({e}); delete {path} (a damaged step)") from None
    _check_memory(cfg, path)
    return cfg


def load_tokenizer_for(info: dict):
    data_dir = info.get("tokenizer_dir") or info.get("data_dir")  # an HF folder holds its own tokenizer.json
    return load_tokenizer(info["tokenizer"], data_dir=Path(data_dir) if data_dir else None,
                          gpt2_bpe_file=info.get("gpt2_bpe_file") or None)
