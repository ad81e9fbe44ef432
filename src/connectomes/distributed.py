"""Process-group helpers: under torchrun every rank trains, one rank writes.

Stages that only write files (prepare, pruning output, evaluation, report) run on rank 0 while the
other ranks wait at a barrier, so no two processes ever write the same file.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init(device: str = "auto") -> None:
    """Join the process group once when launched by torchrun (nccl with CUDA, gloo on CPU)."""
    if world_size() > 1 and not dist.is_initialized():
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if cuda else "gloo")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
