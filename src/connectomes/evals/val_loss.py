"""val_loss: mean cross-entropy over a fixed token budget of the validation split (method.md §6).

The same function is the training loop's validation, so a curve in metrics.jsonl and an evaluation
JSON of the same step agree exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError

NAME = "val_loss"
DEFAULT_TOKENS = 65_536


@torch.no_grad()
def validation_loss(model, paths: list[Path], block_size: int, max_tokens: int, batch_size: int,
                    device) -> tuple[float, int]:
    """(mean loss in nats/token, tokens scored) over the first ``max_tokens`` tokens of ``paths``."""
    from ..data.stream import eval_windows

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in eval_windows(paths, block_size, batch_size, max_tokens):
        logits = model(x.to(device))
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.to(device).reshape(-1), reduction="sum")
        total += loss.item()
        count += y.numel()
    model.train(was_training)
    if count == 0:
        raise DataError(f"validation split {paths[0].parent if paths else '?'} has fewer tokens than one window of {block_size}")
    return total / count, count


def run(lm, ctx) -> dict:
    from ..data.prepare import open_prepared

    if ctx.prepared_dir is None:
        raise DataError("val_loss needs the prepared data folder (the checkpoint's own, or --prepared DIR)")
    data = open_prepared(ctx.prepared_dir)
    paths = data.split_paths("val")
    tokens = int(ctx.options.get("val_loss.tokens", DEFAULT_TOKENS))
    loss, n = validation_loss(lm.model, paths, lm.max_length, tokens, ctx.batch_size, lm.device)
    return {
        "loss": loss,
        "tokens": n,
        "variant": f"first {n} tokens of the val split, windows of {lm.max_length}",
        "data_sha256": data.meta["splits"]["val"]["sha256"],
    }
