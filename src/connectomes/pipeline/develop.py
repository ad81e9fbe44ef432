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

from ..connectome import arms
from ..connectome.masks import ParamMask
from ..connectome.ternary import Connectome
from ..core.errors import UserError
from ..core.layout import RunLayout
from ..model.gpt import GPT, GPTConfig, load_reference_state_dict
from ..training.loop import TrainResult, make_stream, train
from .config import Config


def build_arm_model(arm: str, seed: int, gcfg: GPTConfig, connectome: Connectome | None, c: float,
                    weights: dict[str, torch.Tensor] | None = None):
    """The arm's initial model and its parameter mask (None where every weight trains); ``connectome`` is the
    evolved one the arm derives from (its generation's, see evolve.generation_connectome), ``weights`` the
    trained evolve weights an inherit arm starts from (evolve.generation_weights)."""
    if not arms.known(arm):
        raise UserError(f"unknown arm {arm!r}; choose one of {', '.join(arms.choices())}")
    spec = arms.get(arm)
    torch.manual_seed(seed)
    model = GPT(gcfg)
    if spec.weights_from is not None:
        if weights is None:
            raise UserError(f"arm {arm!r} starts from trained evolve weights; run `connectomes evolve` first")
        load_reference_state_dict(model, weights)
    if not spec.needs_connectome:
        return model, None
    if connectome is None:
        raise UserError(f"arm {arm!r} needs a connectome; run `connectomes evolve` first")
    conn = spec.derive(connectome, seed)
    if spec.weights_from is None:
        conn.apply(model, c)
    else:  # the trained weights keep their values on the connectome's wiring; the pruned ones are cut
        conn.check_fits(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in conn.masks().items():
                params[name].mul_(mask.to(params[name].dtype))
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
    weights: dict[str, torch.Tensor] | None = None,
    max_tokens: int | None = None,
    progress: bool = True,
    stop_at: int | None = None,
    label: str | None = None,
) -> TrainResult:
    """Train one arm x seed into ``layout.develop(arm, seed)`` on the seed's ``max_tokens``-token subset
    of the small split (data.stream.subset_ranges; None: all of it, from the seed's start)."""
    model, masks = build_arm_model(arm, seed, gcfg, connectome, cfg.develop.init_constant, weights)
    tcfg = cfg.develop.train
    stream = make_stream(train_paths, gcfg, tcfg, max_tokens=max_tokens, subset_seed=seed)
    if max_tokens is None:
        stream.seek_for_seed(seed)
    return train(
        model, tcfg, stream, val_paths=val_paths, out_dir=layout.develop(arm, seed).root,
        # the tokens a pass trains, as the stream reads them: a size's n, or the whole split less each shard's
        # tail shorter than a step
        masks=masks, run_info=dict(run_info, stage="develop", arm=arm, seed=seed, tokens_per_pass=stream.tokens_per_pass),
        desc=f"develop {label or f'{arm} seed {seed}'}", progress=progress, stop_at=stop_at,
    )
