"""Checkpoints: weights in safetensors, everything else in forms that load without executing code.

A step folder ``step_000100/`` holds
- ``model.safetensors``  the weights, reference parameter names (no ``module.``/``_orig_mod.``);
- ``state.json``         step, model config, tokenizer, data folder, stream position, config hash;
- ``trainer.pt``         optimizer state and RNG states (tensors and plain containers only, read
                         back with ``torch.load(weights_only=True)``), absent in eval-only copies;
- ``masks.safetensors``  the parameter masks (0/1 uint8) when training is masked;
- ``manifest.json``      the sha256 of each file above, written last and checked before a resume
                         or an evaluation uses the folder, so a damaged file is refused by name
                         instead of silently changing results.
Folders are written under a temporary name and renamed into place, so a kill at any moment leaves
the previous good checkpoint untouched. :class:`CheckpointManager` decides, for one training run,
what to resume from, when to save and what to keep.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..connectome.masks import ParamMask
from ..core import distributed
from ..core.atomic import atomic_dir, atomic_write_json
from ..core.distributed import DeviceSetup
from ..core.errors import CheckpointError, TrainingError
from ..core.integrity import read_manifest, store_manifest, verify_manifest, write_manifest
from ..core.layout import STEP_PREFIX, TrainLayout, step_of
from ..core.readers import read_json, read_safetensors, read_torch
from ..data.stream import TokenStream
from ..model.gpt import GPT, clean_state_dict, load_reference_state_dict
from .config import TrainConfig

STATE = "state.json"
WEIGHTS = "model.safetensors"
TRAINER = "trainer.pt"
MASKS = "masks.safetensors"


def save_step(
    folder: Path,
    model: torch.nn.Module,
    state: dict,
    *,
    trainer: dict | None = None,
    masks: ParamMask | None = None,
) -> Path:
    """Write a complete step folder atomically; returns its final path."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in clean_state_dict(model.state_dict()).items()
               if not k.endswith("rotary.inv_freq")}

    def fill(tmp: Path) -> None:
        save_file(weights, str(tmp / WEIGHTS))
        if masks is not None:
            save_file(masks.state_dict(), str(tmp / MASKS))
        if trainer is not None:
            torch.save(trainer, tmp / TRAINER)
        (tmp / STATE).write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
        write_manifest(tmp)  # last: it covers every file above

    atomic_dir(folder, fill)
    return Path(folder)


def _damaged_remedy(folder: Path) -> str:
    return (f"the step folder is damaged; delete {folder} (and, if it is the one latest.json names, that "
            f"latest.json too, to restart the run) and re-run the same command")


def verify_step(folder: Path, *, resume: bool = False) -> dict[str, str]:
    """Check every file of a step folder against its manifest.json; returns the manifest.
    Raises CheckpointError naming the missing, changed or unlisted file and what to do.

    The manifest must vouch for every file that will be read: the weights and state.json always, the
    masks whenever they are present, trainer.pt when resuming (a kept step's trainer.pt is retired from
    the manifest before it is deleted, so only a resume needs it). A manifest that omits one of them is
    damage, not licence to read the file unchecked."""
    folder = Path(folder)
    remedy = _damaged_remedy(folder)
    manifest = read_manifest(folder, remedy=remedy, error=CheckpointError)
    needed = [WEIGHTS, STATE] + [MASKS] * (folder / MASKS).exists() + [TRAINER] * resume
    unlisted = [name for name in needed if name not in manifest]
    if unlisted:
        raise CheckpointError(f"{folder / 'manifest.json'} does not list {', '.join(unlisted)}, so "
                              f"{'it' if len(unlisted) == 1 else 'they'} cannot be checked; {remedy}")
    verify_manifest(folder, manifest, remedy=remedy, error=CheckpointError)
    return manifest


def read_state(folder: Path) -> dict:
    path = Path(folder) / STATE
    if not path.exists() and not Path(folder).is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist; pass a step_XXXXXX folder")
    return read_json(path, error=CheckpointError,
                     remedy=f"{folder} is not a whole checkpoint folder; delete it to fall back to an earlier one")


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(Path(folder) / WEIGHTS, remedy=_damaged_remedy(Path(folder)))[0]


def load_masks(folder: Path) -> ParamMask | None:
    """The step's masks, refused unless every entry is 0 or 1 (None when the step is unmasked)."""
    path = Path(folder) / MASKS
    if not path.exists():
        return None
    return ParamMask.from_state_dict(read_safetensors(path, remedy=_damaged_remedy(Path(folder)))[0], source=str(path))


def load_trainer(folder: Path) -> dict:
    trainer = read_torch(Path(folder) / TRAINER, remedy=_damaged_remedy(Path(folder)))
    if not isinstance(trainer, dict) or not {"optimizer", "rng"} <= trainer.keys():
        raise CheckpointError(f"{Path(folder) / TRAINER} holds no optimizer and RNG state; {_damaged_remedy(Path(folder))}")
    return trainer


def _rng_state() -> dict:
    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _read_latest(layout: TrainLayout) -> dict | None:
    """latest.json: {"step_dir": name, "step": n}, None before a run's first save."""
    p = layout.latest
    remedy = "delete it to restart this run from scratch"
    rec = read_json(p, remedy=remedy, error=TrainingError, missing=None)
    if rec is None:
        return None
    name, step = rec.get("step_dir"), rec.get("step", 0)
    # a step folder's own name, never a path: latest.json must not send a resume elsewhere
    if (not isinstance(name, str) or not name.startswith(STEP_PREFIX) or not name[len(STEP_PREFIX):].isdigit()
            or isinstance(step, bool) or not isinstance(step, int) or step != step_of(name)):
        raise TrainingError(f"{p} is corrupt (no step folder name and step that agree); {remedy}")
    return rec


def _read_json_record(path: Path) -> dict | None:
    """A small JSON record the manager writes (best.json); None when absent, an error naming it when damaged."""
    rec = read_json(path, missing=None, error=TrainingError,
                    remedy="delete it, and the step folders it names, to restart from the last checkpoint")
    if rec is not None and not (isinstance(rec.get("step"), int) and isinstance(rec.get("val_loss"), (int, float))):
        raise TrainingError(f"{path} does not hold a step and its val_loss; delete it to restart from the last checkpoint")
    return rec


def best_step(layout: TrainLayout) -> int | None:
    """The step train.keep_best kept (the lowest logged val loss on the selection slice), None when the run keeps none."""
    rec = _read_json_record(layout.best)
    return rec["step"] if rec is not None and isinstance(rec.get("step"), int) else None


def finished_step(layout: TrainLayout) -> int | None:
    """The step a finished run ended at (done.json): train.iters, or where train.patience stopped it;
    None while the run is unfinished."""
    rec = read_json(layout.done, missing=None, error=TrainingError,
                    remedy=f"delete it to let the run finish again from {layout.latest}")
    if rec is None:
        return None
    step = rec.get("step") if isinstance(rec, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TrainingError(f"{layout.done} does not name the step the run finished at; delete it to let the run "
                            f"finish again from {layout.latest}")
    return step


def saved_step(layout: TrainLayout) -> int | None:
    """The step a training run would resume from (None when it saved nothing yet)."""
    rec = _read_latest(layout)
    return None if rec is None else rec.get("step", 0)


class CheckpointManager:
    """One training run's checkpoints: what to resume from, when to save, what to keep.

    Saves roll: each one supersedes the previous, which is deleted unless its step is in
    ``keep_steps`` or is the best step (then only its trainer state goes and its weights stay for
    evaluation). ``latest.json`` names the step to resume from and is rewritten only once that step's
    folder is complete, so a kill at any moment leaves a resumable run. Only the main process writes.

    With ``keep_best`` the step of the lowest logged val loss is kept too: ``best.json`` names it before
    its folder is saved, so a run killed in between re-saves it when it passes that step again (the
    same step with the same loss counts as the best again), and a superseded best step is deleted only
    after the new one is whole.
    """

    def __init__(self, layout: TrainLayout, cfg: TrainConfig, rt: DeviceSetup, *, model: GPT, optimizer,
                 masks: ParamMask | None, stream: TokenStream, info: dict, stop_at: int | None = None):
        self.layout, self.cfg, self.rt = layout, cfg, rt
        self.model, self.optimizer, self.masks, self.stream = model, optimizer, masks, stream
        self.info = info  # goes into every state.json; carries the run's train_config_hash
        self.stop_at = stop_at
        self._superseded_best: int | None = None  # the best step a new best replaces, retired once that is saved

    def latest(self) -> Path | None:
        """The step folder latest.json names (None before the first save)."""
        rec = _read_latest(self.layout)
        if rec is None:
            return None
        folder = self.layout.steps / rec["step_dir"]
        if not (folder / TRAINER).exists():
            raise TrainingError(f"{self.layout.latest} points to {folder}, which cannot be resumed from; "
                                f"delete {self.layout.latest} to restart")
        return folder

    def resume(self) -> int | None:
        """Load the latest checkpoint into the model, optimizer, masks, RNG and stream and return its
        step; None when there is none (a fresh run)."""
        folder = self.latest()
        if folder is None:
            return None
        verify_step(folder, resume=True)  # a flipped byte in weights, optimizer or RNG state must not be resumed from
        state = read_state(folder)
        if state.get("train_config_hash") != self.info["train_config_hash"]:
            raise TrainingError(f"{self.layout.root} holds a run started with different training settings; "
                                "use a new run name or delete the folder")
        saved_masks = load_masks(folder)
        if (saved_masks is None) != (self.masks is None):
            raise TrainingError(f"{folder} was saved {'with' if saved_masks is not None else 'without'} masks but this run is not")
        load_reference_state_dict(self.model, load_weights(folder))
        self.model.to(self.rt.device)
        if self.masks is not None:
            self.masks.load(saved_masks.masks)
        trainer = load_trainer(folder)
        self.optimizer.load_state_dict(trainer["optimizer"])
        _set_rng_state(trainer["rng"])
        self.stream.load_state_dict(state["stream"])
        if self.rt.is_main:
            self._retire_older(state["step"])
        return state["step"]

    def _retire_older(self, step: int) -> None:
        """Retire what a save before ``step`` left unretired (killed between latest.json and the retirement),
        so that the resumed run's folder is the one an uninterrupted run leaves: a superseded step's trainer
        state, or a superseded step itself (an earlier best step a later best replaced)."""
        for folder in sorted(self.layout.steps.glob(f"{STEP_PREFIX}*")):
            number = folder.name[len(STEP_PREFIX):]
            if not (number.isdigit() and folder.is_dir() and int(number) < step):
                continue
            if (folder / TRAINER).exists() or not self._kept(int(number)):
                self._retire(folder)

    def best(self) -> dict | None:
        """{"step", "val_loss"} of the best step so far (keep_best), None before the first validation."""
        rec = _read_json_record(self.layout.best) if self.cfg.keep_best else None
        return rec if isinstance(rec, dict) and isinstance(rec.get("step"), int) else None

    def track_best(self, step: int, val_loss: float | None) -> bool:
        """Record ``step`` as the best when its val loss is the lowest yet (keep_best); whether it is."""
        if not self.cfg.keep_best or val_loss is None or not math.isfinite(val_loss):
            return False
        best = self.best()
        if best is not None and not (val_loss < best["val_loss"] or step == best["step"]):
            return False
        self._superseded_best = best["step"] if best is not None and best["step"] != step else None
        if self.rt.is_main:
            atomic_write_json(self.layout.best, {"step": step, "val_loss": val_loss})
        return True

    def should_save(self, step: int) -> bool:
        """Kept steps, every save_every steps, the last step and ``stop_at``; step 0 only when kept."""
        cfg = self.cfg
        if step in cfg.keep_steps:
            return True
        if step == 0:
            return False
        return step == cfg.iters or bool(cfg.save_every and step % cfg.save_every == 0) or step == self.stop_at

    def save(self, step: int) -> None:
        if self.rt.is_main:
            state = dict(self.info, step=step, stream=self.stream.state_dict(), tokens=step * self.stream.step_tokens)
            trainer = {"optimizer": self.optimizer.state_dict(), "rng": _rng_state()}
            folder = save_step(self.layout.step(step), self.model, state, trainer=trainer, masks=self.masks)
            previous = self.latest()
            atomic_write_json(self.layout.latest, {"step_dir": folder.name, "step": step})
            if previous is not None and previous != folder:
                self._retire(previous)
            old_best = self._superseded_best
            if old_best is not None and old_best != step and self.layout.step(old_best) != previous:
                self._retire(self.layout.step(old_best))
            self._superseded_best = None
        distributed.barrier()

    def _kept(self, step: int) -> bool:
        best = self.best()
        return step in self.cfg.keep_steps or (best is not None and best["step"] == step)

    def _retire(self, folder: Path) -> None:
        """A superseded step: weights only when kept for evaluation (a kept or the best step), else gone."""
        if not folder.exists():
            return
        if self._kept(step_of(folder.name)):
            # drop trainer.pt from the manifest first: a kill in between leaves an unlisted file, never a listed missing one
            manifest = read_manifest(folder, remedy=_damaged_remedy(folder), error=CheckpointError)
            manifest.pop(TRAINER, None)
            store_manifest(folder, manifest)
            (folder / TRAINER).unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def finish(self, step: int, val_loss: float | None) -> None:
        """Mark the run finished (done.json)."""
        if self.rt.is_main:
            atomic_write_json(self.layout.done, {"step": step, "val_loss": val_loss,
                                                 "train_config_hash": self.info["train_config_hash"]})
