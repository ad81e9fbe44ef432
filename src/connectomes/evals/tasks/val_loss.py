"""val_loss: mean cross-entropy over a fixed token budget of the validation split (docs/method.md §6).

It is training.validation's number, the training loop's own validation, so a curve in metrics.jsonl
and an evaluation JSON of the same step agree exactly. With ``val_loss.offset`` it scores the tokens after
that many: a study whose units select a step (train.keep_best) reports on the report slice, the tokens
after the selection slice, which equals the curves' logged ``report_loss``.
"""

from __future__ import annotations

from ...core.errors import DataError
from ...data.prepare import open_prepared
from ...training.validation import validation_loss
from ..registry import Metric, Option, TaskSpec, integer

DEFAULT_TOKENS = 65_536
SELECTION = "the first of the val split, the training curves' windows"
REPORT = "the report slice: the val split's tokens after the first {offset:,} (the selection slice)"


def run(lm, ctx) -> dict:
    """Identifies the data by its shard hashes, not its folder: the same split prepared in two run
    folders gives the same result. In a study of several corpora (ctx.val_dirs) it scores the val split of the
    corpus the unit developed on, says which (``corpus``), and scores every corpus named beside it (``by_corpus``)."""
    if ctx.val_dirs:
        own = next(iter(ctx.val_dirs))
        result = _score(lm, ctx, ctx.val_dirs[own])
        result["corpus"] = own
        scored = {own: result, **{n: _score(lm, ctx, ctx.val_dirs[n]) for n in ctx.val_corpora if n != own}}
        result["by_corpus"] = {n: {k: scored[n][k] for k in ("loss", "tokens", "shard_sha256")}
                               for n in dict.fromkeys([own, *ctx.val_corpora])}
        return result
    if ctx.prepared_dir is None:
        raise DataError("val_loss needs the prepared data folder: evaluate a checkpoint that records it, or pass --prepared DIR")
    return _score(lm, ctx, ctx.prepared_dir)


def _score(lm, ctx, prepared_dir) -> dict:
    data = open_prepared(prepared_dir)
    paths = data.split_paths("val")
    budget, offset = ctx.option("val_loss.tokens"), ctx.option("val_loss.offset")
    loss, n = validation_loss(lm.model, paths, lm.max_length, budget, lm.device, offset)
    where = f"{n} predicted tokens of the val split after its first {offset}" if offset else \
        f"first {n} predicted tokens of the val split"
    # an offset-0 result keeps its fields as they were, so results made before the option stay current
    return {
        "loss": loss,
        "tokens": n,
        **({"offset": offset} if offset else {}),
        "variant": f"{where}, non-overlapping windows of {lm.max_length}",
        "shard_sha256": dict(data.meta["splits"]["val"]["sha256"]),
        "selection": {"selection": REPORT.format(offset=offset) if offset else SELECTION, "n": n,
                      "of": int(data.meta["splits"]["val"]["tokens"]), "unit": "tokens"},
    }


def describe(result: dict, metric: Metric) -> str:
    offset = result.get("offset")
    return f"{result.get('tokens', 0):,} tokens: {REPORT.format(offset=offset) if offset else SELECTION}"


SPEC = TaskSpec(
    name="val_loss", doc="mean cross-entropy over a fixed token budget of the prepared val split", run=run,
    data_dir=None,
    options=(Option("val_loss.tokens", DEFAULT_TOKENS, "validation token budget (whole windows only); the study "
                    "sets it to develop.train.eval_tokens, the training curves' budget, or where units keep their "
                    "best step to the report slice's (develop.train.report_tokens)", integer(1)),
             Option("val_loss.offset", 0, "predicted tokens of the val split skipped before the budget; the study "
                    "sets it to develop.train.eval_tokens where units keep their best step, so the best step is "
                    "reported on tokens it was not chosen on", integer(0))),
    metrics=(Metric("val loss (nats)", ("loss",), higher_is_better=False, figures=("frontier",)),),
    title="validation loss", default=True, default_steps=True, describe=describe, logged="val_loss",
)
