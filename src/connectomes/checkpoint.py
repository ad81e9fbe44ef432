"""Checkpoints: weights in safetensors, everything else in forms that load without executing code.

A step folder ``step_000100/`` holds
- ``model.safetensors``  the weights, reference parameter names (no ``module.``/``_orig_mod.``);
- ``state.json``         step, model config, tokenizer, data folder, stream position, config hash;
- ``trainer.pt``         optimizer state and RNG states (tensors and plain containers only, read
                         back with ``torch.load(weights_only=True)``), absent in eval-only copies;
- ``masks.safetensors``  the parameter masks when training is masked.
Folders are written under a temporary name and renamed into place, so a kill at any moment leaves
the previous good checkpoint untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .model import GPT, GPTConfig, clean_state_dict, load_reference_state_dict

STATE = "state.json"
WEIGHTS = "model.safetensors"
TRAINER = "trainer.pt"
MASKS = "masks.safetensors"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_step(
    folder: Path,
    model: torch.nn.Module,
    state: dict,
    *,
    trainer: dict | None = None,
    masks: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a complete step folder atomically; returns its final path."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in clean_state_dict(model.state_dict()).items()
               if not k.endswith("rotary.inv_freq")}
    save_file(weights, str(tmp / WEIGHTS))
    if masks:
        save_file({k: v.detach().to("cpu", torch.uint8).contiguous() for k, v in masks.items()}, str(tmp / MASKS))
    if trainer is not None:
        torch.save(trainer, tmp / TRAINER)
    (tmp / STATE).write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
    if folder.exists():
        old = folder.with_name(folder.name + f".old{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    return folder


def read_state(folder: Path) -> dict:
    path = Path(folder) / STATE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a checkpoint folder (no {STATE}); pass a step_XXXXXX folder") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt ({e}); delete this step folder to fall back to an earlier one") from None


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt") from None


def load_masks(folder: Path) -> dict[str, torch.Tensor] | None:
    path = Path(folder) / MASKS
    if not path.exists():
        return None
    try:
        return {k: v.bool() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt") from None


def load_trainer(folder: Path) -> dict:
    path = Path(folder) / TRAINER
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; this step folder cannot be resumed from") from None
    except Exception as e:  # torch raises several types for a damaged zip
        raise CheckpointError(f"{path} cannot be read ({e}); delete the step folder to resume from an earlier one") from None


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


def load_model(path: str | Path, device: str = "cpu", *, n_head: int | None = None) -> tuple[GPT, dict]:
    """A model from a toolkit step folder, a Hugging Face folder or a reference-format state-dict file, plus its info.

    ``info`` carries ``tokenizer`` (name), ``data_dir``, ``step``, ``config`` and ``model_config``.
    """
    path = Path(path)
    from .hf import is_hf_folder, load_hf_folder

    if is_hf_folder(path):  # a Hugging Face folder, ours or the authors' (connectomes.hf)
        model, info = load_hf_folder(path)
        return model.to(device).eval(), info
    if path.is_dir():
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
    from .data.tokenizers import load_tokenizer

    data_dir = info.get("tokenizer_dir") or info.get("data_dir")  # an HF folder holds its own tokenizer.json
    return load_tokenizer(info["tokenizer"], data_dir=Path(data_dir) if data_dir else None,
                          gpt2_bpe_file=info.get("gpt2_bpe_file") or None)
