"""val_loss: mean cross-entropy over a fixed token budget of the validation split (docs/method.md §6).

It is training.validation's number, the training loop's own validation, so a curve in metrics.jsonl
and an evaluation JSON of the same step agree exactly.
"""

from __future__ import annotations

from ...core.errors import DataError
from ...data.prepare import open_prepared
from ...training.validation import validation_loss
from ..registry import Metric, Option, TaskSpec, integer

DEFAULT_TOKENS = 65_536
SELECTION = "the first of the val split, the training curves' windows"


def run(lm, ctx) -> dict:
    """Identifies the data by its shard hashes, not its folder: the same split prepared in two run
    folders gives the same result."""
    if ctx.prepared_dir is None:
        raise DataError("val_loss needs the prepared data folder: evaluate a checkpoint that records it, or pass --prepared DIR")
    data = open_prepared(ctx.prepared_dir)
    paths = data.split_paths("val")
    budget = ctx.option("val_loss.tokens")
    loss, n = validation_loss(lm.model, paths, lm.max_length, budget, lm.device)
    return {
        "loss": loss,
        "tokens": n,
        "variant": f"first {n} predicted tokens of the val split, non-overlapping windows of {lm.max_length}",
        "shard_sha256": dict(data.meta["splits"]["val"]["sha256"]),
        "selection": {"selection": SELECTION, "n": n, "of": int(data.meta["splits"]["val"]["tokens"]), "unit": "tokens"},
    }


def describe(result: dict, metric: Metric) -> str:
    return f"{result.get('tokens', 0):,} tokens: {SELECTION}"


SPEC = TaskSpec(
    name="val_loss", doc="mean cross-entropy over a fixed token budget of the prepared val split", run=run,
    data_dir=None,
    options=(Option("val_loss.tokens", DEFAULT_TOKENS, "validation token budget (whole windows only); the study "
                    "sets it to develop.train.eval_tokens, the training curves' budget", integer(1)),),
    metrics=(Metric("val loss (nats)", ("loss",), higher_is_better=False, figures=("frontier",)),),
    title="validation loss", default=True, default_steps=True, describe=describe, logged="val_loss",
)
