"""The untrained view of a lineage's connectome (issue 30; weight-agnostic scoring): validation loss at step 0,
no training, with every prunable weight set to ternary x c for each c in develop.untrained_constants, for the
connectome, its degree-preserving rewiring and the random connectome of the same per-tensor counts.

It asks whether the wiring alone, before any learning, already predicts text better than wiring with the same
counts, and at which scale c. Run once per lineage after its evolution (part of the lineage's work item);
written to ``<lineage>/untrained.json``, sealed, and redone only when its inputs change.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..connectome import arms
from ..core.atomic import atomic_write_json
from ..core.config import config_hash
from ..core.errors import CheckpointError
from ..core.integrity import seal_problem, sealed
from ..core.readers import read_json
from ..model.gpt import GPT
from ..training.validation import validation_loss
from . import corpora
from .evolve import evolved_connectome
from .run import Run, note

# the connectome, what its degrees alone give, and what its counts alone give
SCANNED = ("connectome", "rewired", "random")


def untrained_path(run: Run, lineage: int | None, shape: str | None) -> Path:
    return run.layout.lineage(lineage, shape).root / "untrained.json"


def stage_untrained(run: Run, upstream: str, lineage: int | None = None, shape: str | None = None) -> Path | None:
    """Score the lineage's step-0 losses over develop.untrained_constants (None when none are set)."""
    cfg = run.cfg
    constants = cfg.develop.untrained_constants
    if not constants:
        return None
    path, tokens = untrained_path(run, lineage, shape), cfg.develop.train.eval_tokens
    h = config_hash({"upstream": upstream, "constants": constants, "arms": SCANNED, "seeds": cfg.develop.seeds,
                     "eval_tokens": tokens})
    if path.exists():
        rec = read_json(path, error=CheckpointError, remedy=f"delete {path} to score it again")
        if rec.get("upstream_hash") == h and seal_problem(rec) is None:
            return path
    gcfg = run.model_config(shape)
    conn = evolved_connectome(cfg, gcfg, run.layout.lineage(lineage, shape), lineage)
    label = f"untrained scan, lineage {lineage}" if lineage is not None else "untrained scan"
    note(f"{label}: {len(constants)} constants x {SCANNED}, {tokens:,} val tokens each ...")
    losses: dict[str, dict[str, list[float]]] = {}
    val = run.data_of(corpora.lineage_corpus(cfg, lineage)).split_paths("val")  # the corpus it evolved on
    for arm in SCANNED:
        # the connectome's weights do not depend on the seed; the controls' draws do
        for seed in cfg.develop.seeds[:1] if arm == "connectome" else cfg.develop.seeds:
            derived = arms.get(arm).derive(conn, seed)
            row = []
            for c in constants:
                torch.manual_seed(0)  # the norms' weights; every prunable weight is set below
                model = GPT(gcfg)
                derived.apply(model, c)
                row.append(validation_loss(model, val, gcfg.block_size, tokens, "cpu")[0])
            losses.setdefault(arm, {})[str(seed)] = row
    atomic_write_json(path, sealed({"upstream_hash": h, "lineage": lineage, "shape": shape, "constants": constants,
                                    "eval_tokens": tokens, "losses": losses}))
    note(f"{label}: done -> {path}")
    return path
