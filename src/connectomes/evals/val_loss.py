"""val_loss: mean cross-entropy over a fixed token budget of the validation split (method.md §6).

The same function is the training loop's validation, so a curve in metrics.jsonl and an evaluation
JSON of the same step agree exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError, UserError
from . import Metric, Option, TaskSpec, integer

DEFAULT_TOKENS = 65_536

# Windows per forward pass, fixed rather than the caller's batch size: a window's logits change in the
# last bits with the batch they are computed in (the CPU matmul blocks differently), so the training
# loop (its micro batch, which also depends on the process count) and the val_loss task (the eval
# batch) would disagree in the 8th digit. One pass size makes them bit-identical on one device.
WINDOWS_PER_PASS = 8


@torch.no_grad()
def validation_loss(model, paths: list[Path], block_size: int, max_tokens: int, device) -> tuple[float, int]:
    """(mean loss in nats/token, tokens scored) over the first ``max_tokens`` predicted tokens of
    ``paths``, in the non-overlapping windows of ``data.stream.eval_windows``: whole windows only,
    so the count is ``max_tokens`` rounded down to a multiple of ``block_size`` (less if the split
    is shorter). The model's train/eval mode is restored afterwards."""
    from ..data.stream import eval_windows

    if max_tokens < block_size:
        raise UserError(f"the validation budget of {max_tokens} tokens is smaller than one window of {block_size}; "
                        f"raise it to at least {block_size}")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in eval_windows(paths, block_size, WINDOWS_PER_PASS, max_tokens):
            logits = model(x.to(device))
            y = y.to(device)
            total += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        where = paths[0].parent if paths else "(no shards)"
        raise DataError(f"validation split in {where} has fewer than {block_size + 1} tokens; prepare more validation data")
    return total / count, count


def run(lm, ctx) -> dict:
    """Identifies the data by its shard hashes, not its folder: the same split prepared in two run
    folders gives the same result."""
    from ..data.prepare import open_prepared

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
    }


SPEC = TaskSpec(
    name="val_loss", doc="mean cross-entropy over a fixed token budget of the prepared val split", run=run,
    data_dir=None,
    options=(Option("val_loss.tokens", DEFAULT_TOKENS, "validation token budget (whole windows only); the study "
                    "sets it to develop.train.eval_tokens, the training curves' budget", integer(1)),),
    metrics=(Metric("val loss (nats)", ("loss",), higher_is_better=False),),
)
