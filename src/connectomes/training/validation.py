"""Validation loss: mean cross-entropy over a fixed token budget of the validation split, in fixed windows.

The training loop's curves and the ``val_loss`` evaluation task both call :func:`validation_loss`, so a
curve in metrics.jsonl and an evaluation JSON of the same step agree exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import DataError, UserError
from ..data.stream import eval_windows

# Windows per forward pass, fixed rather than the caller's batch size: a window's logits change in the
# last bits with the batch they are computed in (the CPU matmul blocks differently), so the training
# loop (its micro batch, which also depends on the process count) and the val_loss task (the eval
# batch) would disagree in the 8th digit. One pass size makes them bit-identical on one device.
WINDOWS_PER_PASS = 8
# the metrics.jsonl field of the report slice's loss (beside val_loss, the selection slice's)
REPORT_LOSS = "report_loss"


@torch.no_grad()
def validation_loss(model, paths: list[Path], block_size: int, max_tokens: int, device,
                    offset: int = 0) -> tuple[float, int]:
    """(mean loss in nats/token, tokens scored) over ``max_tokens`` predicted tokens of ``paths`` after
    the first ``offset`` (0: the selection slice; eval_tokens: the report slice, see :func:`report_slice`),
    in the non-overlapping windows of ``data.stream.eval_windows``: whole windows only, so the count is
    ``max_tokens`` rounded down to a multiple of ``block_size`` (less if the split is shorter). The
    model's train/eval mode is restored afterwards."""
    if max_tokens < block_size:
        raise UserError(f"the validation budget of {max_tokens} tokens is smaller than one window of {block_size}; "
                        f"raise it to at least {block_size}")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in eval_windows(paths, block_size, WINDOWS_PER_PASS, max_tokens, offset):
            logits = model(x.to(device))
            y = y.to(device)
            total += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        where = paths[0].parent if paths else "(no shards)"
        after = f" after its first {offset:,}" if offset else ""
        raise DataError(f"validation split in {where} has fewer than {block_size + 1} tokens{after}; prepare more "
                        "validation data (data.val_tokens)")
    return total / count, count


def report_slice(cfg) -> tuple[int, int] | None:
    """(offset, tokens) of the report slice of a run that selects a step (train.keep_best): the
    ``report_tokens`` (0: as many as ``eval_tokens``) predicted tokens that follow the selection slice,
    the first ``eval_tokens`` that the curves, best.json and patience read. Selecting and reporting on
    the same tokens would report the minimum of a noisy curve, optimistic by its noise; None when the
    run selects nothing (its val loss is reported on the curves' own tokens, as it always was)."""
    if not cfg.keep_best:
        return None
    return cfg.eval_tokens, cfg.report_tokens or cfg.eval_tokens
