"""The inner loop ("development", docs/method.md §4): one arm x seed trained on the `small` split.

The arms are declared in :mod:`connectomes.connectome.arms`. What a seed changes: the dense arm's initialisation,
the random arms' connectome draw (random, mask_only), and for every arm its data; the connectome arm's
initialisation does not depend on the seed, so for it the seed is the data alone. Seed s of every arm
trains on the same data, so arms stay paired by seed.

Developmental data sizes (develop.sizes, issue 10): a unit of size n trains on seed s's n-token subset
of the small split (data.stream.subset_ranges: 4,096-token chunks in a permutation seeded by s, the
first n tokens of it in that order, so a seed's smaller subsets lie inside its larger ones), read as a
ring so that all n tokens train once per pass. Seeds differ in which passages they see and in what
order, so seeds replicate the draw of a data set, not the phase of one. A unit without a size reads the
whole split from a seed-dependent start instead (data.stream.seed_start: the golden ratio spreads seeds
over a pass). Every size trains the same develop.train.iters steps (at most, with develop.train.patience), so the
compute per run is bounded alike and a smaller set is seen more often (more epochs): the sweep asks how loss
depends on the data, not on the compute. Over-fitting on small sets shows as a val loss that rises late,
which is why the report also gives early stopping's loss (develop.train.keep_best: chosen on the selection
slice, reported on the report slice) beside the final one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..connectome.arms import ARMS
from ..connectome.masks import ParamMask
from ..connectome.ternary import Connectome
from ..core.errors import UserError
from ..core.layout import RunLayout
from ..model.gpt import GPT, GPTConfig
from ..training.loop import TrainResult, make_stream, train
from .config import Config


def build_arm_model(arm: str, seed: int, gcfg: GPTConfig, connectome: Connectome | None, c: float):
    """The arm's initial model and its parameter mask (None for dense); ``connectome`` is the
    evolved one the arm derives from (its generation's, see evolve.generation_connectome)."""
    if arm not in ARMS:
        raise UserError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    torch.manual_seed(seed)
    model = GPT(gcfg)
    if not ARMS[arm].needs_connectome:
        return model, None
    if connectome is None:
        raise UserError(f"arm {arm!r} needs a connectome; run `connectomes evolve` first")
    conn = ARMS[arm].derive(connectome, seed)
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
    connectome: Connectome | None,
    max_tokens: int | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train one arm x seed into ``layout.develop(arm, seed)`` on the seed's ``max_tokens``-token subset
    of the small split (data.stream.subset_ranges; None: all of it, from the seed's start)."""
    model, masks = build_arm_model(arm, seed, gcfg, connectome, cfg.develop.init_constant)
    tcfg = cfg.develop.train
    stream = make_stream(train_paths, gcfg, tcfg, max_tokens=max_tokens, subset_seed=seed)
    if max_tokens is None:
        stream.seek_for_seed(seed)
    return train(
        model, tcfg, stream, val_paths=val_paths, out_dir=layout.develop(arm, seed).root,
        # the tokens a pass trains, as the stream reads them: a size's n, or the whole split less each shard's
        # tail shorter than a step
        masks=masks, run_info=dict(run_info, stage="develop", arm=arm, seed=seed, tokens_per_pass=stream.tokens_per_pass),
        desc=f"develop {arm} seed {seed}", progress=progress, stop_at=stop_at,
    )
