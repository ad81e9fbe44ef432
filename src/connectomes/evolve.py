"""The outer loop ("evolution", method.md §3): G generations of train on `large` -> prune -> re-initialise.

Layout under ``<run>/evolve/``::

    gen_00/               the generation's training run (steps/, metrics.jsonl, done.json)
    gen_00/pruned/        model + masks after pruning and re-initialisation (= start of gen_01)
    gen_00/generation.json  val loss, per-tensor alive counts and density after pruning
    rewind.safetensors    weights at evolve.rewind_step (only with evolve.reinit=rewind)

Every piece is written atomically, so a re-run continues from the last complete piece: a finished
generation is never retrained, and an unfinished one resumes exactly from its last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import checkpoint as ckpt
from . import distributed
from .config import Config, config_hash, to_dict
from .connectome import (
    Connectome,
    ParamMask,
    dense_masks,
    magnitude_prune,
    reinit_signed_constant,
    rewind,
)
from .connectome_file import save_connectome
from .model import GPT, GPTConfig, load_reference_state_dict
from .train import TrainResult, train


def evolve_hash(cfg: Config, gcfg: GPTConfig) -> str:
    """What a generation's result depends on: model shape, outer-loop settings and the data."""
    return config_hash({"model": gcfg.to_dict(), "evolve": to_dict(cfg.evolve), "data": to_dict(cfg.data)})


def initial_model(gcfg: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(gcfg)


def _gen_dir(evolve_dir: Path, g: int) -> Path:
    return evolve_dir / f"gen_{g:02d}"


def _load_pruned(folder: Path, gcfg: GPTConfig) -> tuple[GPT, dict[str, torch.Tensor]]:
    model = GPT(gcfg)
    load_reference_state_dict(model, ckpt.load_weights(folder))
    masks = ckpt.load_masks(folder)
    return model, masks


def completed_generations(evolve_dir: Path, h: str) -> int:
    """Number of leading generations whose pruned state exists and matches the config hash ``h``."""
    g = 0
    while True:
        meta = _gen_dir(evolve_dir, g) / "generation.json"
        if not meta.exists():
            return g
        try:
            if json.loads(meta.read_text()).get("evolve_hash") != h:
                return g
        except json.JSONDecodeError:
            return g
        g += 1


def run_evolve(
    cfg: Config,
    gcfg: GPTConfig,
    *,
    train_paths: list[Path],
    val_paths: list[Path] | None,
    run_dir: Path,
    run_info: dict,
    progress: bool = True,
    stop_at: tuple[int, int] | None = None,
) -> Path | None:
    """Run (or continue) the outer loop; returns the connectome path, or None if stopped early.

    ``stop_at=(generation, step)`` stops inside that generation after its checkpoint at ``step``
    (used to test that a killed study resumes exactly).
    """
    ev = cfg.evolve
    evolve_dir = Path(run_dir) / "evolve"
    evolve_dir.mkdir(parents=True, exist_ok=True)
    h = evolve_hash(cfg, gcfg)
    out_path = Path(run_dir) / "connectome.safetensors"
    done = completed_generations(evolve_dir, h)
    if done >= ev.generations and out_path.exists():
        return out_path

    seed = ev.train.seed
    if done == 0:
        model, masks = initial_model(gcfg, seed), None
    else:
        model, masks = _load_pruned(_gen_dir(evolve_dir, done - 1) / "pruned", gcfg)

    rewind_path = evolve_dir / "rewind.safetensors"
    snapshot = None
    if ev.reinit == "rewind" and ev.rewind_step == 0 and not rewind_path.exists():
        if distributed.is_main():
            _save_snapshot(model, rewind_path)
        distributed.barrier()

    for g in range(done, ev.generations):
        gdir = _gen_dir(evolve_dir, g)

        def on_step(step: int, m: GPT, g=g) -> None:
            if ev.reinit == "rewind" and g == 0 and step == ev.rewind_step and not rewind_path.exists() and distributed.is_main():
                _save_snapshot(m, rewind_path)

        stream_start = None
        if g > 0:  # continue the data stream where the previous generation stopped
            prev = _gen_dir(evolve_dir, g - 1) / "steps" / ckpt.step_dir_name(ev.train.iters)
            stream_start = ckpt.read_state(prev)["stream"]
        result: TrainResult = train(
            model, ev.train, train_paths=train_paths, val_paths=val_paths, out_dir=gdir,
            masks=ParamMask(masks) if masks is not None else None,
            run_info=dict(run_info, stage="evolve", generation=g),
            desc=f"evolve gen {g + 1}/{ev.generations}", progress=progress,
            stop_at=stop_at[1] if stop_at and stop_at[0] == g else None, on_step=on_step, stream_start=stream_start,
        )
        if not result.finished:
            return None
        if masks is None:
            masks = dense_masks(model)
        masks = {k: v.cpu() for k, v in masks.items()}
        model.cpu()
        alive_before = {k: int(v.sum()) for k, v in masks.items()}
        masks = magnitude_prune(model, masks, ev.prune_fraction, scope=ev.prune_scope)
        if ev.reinit == "signed_constant":
            reinit_signed_constant(model, masks, ev.reinit_constant)
        else:
            if snapshot is None:
                snapshot = load_file(str(rewind_path))
            rewind(model, masks, snapshot)
        alive = {k: int(v.sum()) for k, v in masks.items()}
        numel = {k: v.numel() for k, v in masks.items()}
        # Every rank prunes its own (identical, DDP-synchronised) copy; only rank 0 writes.
        if not distributed.is_main():
            distributed.barrier()
            continue
        ckpt.save_step(gdir / "pruned", model, dict(run_info, stage="evolve-pruned", generation=g,
                                                     model_config=gcfg.to_dict()), masks=masks)
        ckpt.atomic_write_json(gdir / "generation.json", {
            "generation": g,
            "evolve_hash": h,
            "val_loss": result.final_val_loss,
            "alive_before": alive_before,
            "alive_after": alive,
            "numel": numel,
            "density_after": {k: alive[k] / numel[k] for k in alive},
            "total_density_after": sum(alive.values()) / sum(numel.values()),
            "train_wall_s": result.wall_s,
        })
        distributed.barrier()

    conn = Connectome.from_model(model, masks, meta={
        "model_config": gcfg.to_dict(),
        "generation": ev.generations,
        "source_run": str(run_dir),
        "config_hash": h,
        "prune_fraction": ev.prune_fraction,
        "prune_scope": ev.prune_scope,
        "reinit": ev.reinit,
    })
    if distributed.is_main():
        save_connectome(conn, out_path)
    distributed.barrier()
    return out_path


def _save_snapshot(model: GPT, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.endswith("inv_freq")}, str(tmp))
    tmp.replace(path)


def generation_summaries(run_dir: Path) -> list[dict]:
    out = []
    for p in sorted((Path(run_dir) / "evolve").glob("gen_*/generation.json")):
        out.append(json.loads(p.read_text()))
    return out
