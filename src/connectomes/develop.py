"""The inner loop ("development", method.md §4): one arm x seed trained on the `small` split.

The arms are declared in :mod:`connectomes.arms`. What a seed changes: the dense arm's
initialisation, the random arms' connectome draw, and for every arm the data order (the stream starts
at a seed-dependent offset into `small`). Without the last, the connectome arm would be deterministic
and its "seeds" identical.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .arms import ARMS
from .config import Config
from .connectome import ParamMask
from .connectome_file import load_connectome
from .errors import UserError
from .layout import RunLayout
from .model import GPT, GPTConfig
from .train import TrainResult, make_stream, train


def build_arm_model(arm: str, seed: int, gcfg: GPTConfig, connectome_path: Path | None, c: float):
    """The arm's initial model and its parameter mask (None for dense)."""
    if arm not in ARMS:
        raise UserError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    torch.manual_seed(seed)
    model = GPT(gcfg)
    if not ARMS[arm].needs_connectome:
        return model, None
    if connectome_path is None or not Path(connectome_path).exists():
        raise UserError(f"arm {arm!r} needs a connectome file ({connectome_path}); run `connectomes evolve` first")
    conn = ARMS[arm].derive(load_connectome(connectome_path), seed)
    conn.apply(model, c)
    return model, ParamMask(conn.masks())


def run_develop(
    cfg: Config,
    gcfg: GPTConfig,
    arm: str,
    seed: int,
    layout: RunLayout,
    *,
    train_paths: list[Path],
    val_paths: list[Path] | None,
    run_info: dict,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    model, masks = build_arm_model(arm, seed, gcfg, layout.connectome, cfg.develop.init_constant)
    tcfg = cfg.develop.train
    stream = make_stream(train_paths, gcfg, tcfg)
    stream.seek_for_seed(seed)
    return train(
        model, tcfg, stream, val_paths=val_paths, out_dir=layout.develop(arm, seed).root,
        masks=masks, run_info=dict(run_info, stage="develop", arm=arm, seed=seed),
        desc=f"develop {arm} seed {seed}", progress=progress, stop_at=stop_at,
    )
