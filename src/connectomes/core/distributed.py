"""Process and device setup: under torchrun every rank trains, one rank writes.

Stages that only write files (prepare, pruning output, evaluation, report) run on rank 0 while the
other ranks wait at a barrier, so no two processes ever write the same file. The process group's
backend follows the devices the stages train on (nccl for CUDA, gloo for CPU), resolved the same
way as each training run's device setup (:func:`setup_device`) resolves them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import TrainingError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def resolve_device(want: str) -> str:
    """A ``train.device`` setting as the device type it runs on: "cuda" or "cpu"."""
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return want


def backend_for(devices: list[str]) -> str:
    """The process-group backend for stages training on ``devices`` (settings, resolved here);
    stages on both kinds get a group that routes each tensor to its device's backend."""
    kinds = {resolve_device(d) for d in devices}
    if kinds == {"cuda"}:
        return "nccl"
    if kinds == {"cpu"}:
        return "gloo"
    return "cpu:gloo,cuda:nccl"


def init(*devices: str) -> None:
    """Join the process group once when launched by torchrun, with the backend for ``devices``."""
    if world_size() > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend_for(list(devices)))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@dataclass
class DeviceSetup:
    """Where this process trains: its device, its rank in the process group, and its autocast precision.
    (Not the ``runtime`` config section, core.runtime.RuntimeConfig: how a study uses the machine.)"""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    autocast_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        """bf16 autocast when this setup uses it, else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def setup_device(device: str, dtype: str) -> DeviceSetup:
    """Pick the device (a ``train.device`` setting) and, under torchrun, join the process group
    (once per process); ``dtype`` "auto" means bf16 autocast on CUDA, float32 on CPU."""
    want = resolve_device(device)
    if want == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    device_ = torch.device(f"cuda:{local_rank()}" if want == "cuda" else "cpu")
    if want == "cuda":
        torch.cuda.set_device(device_)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    init(want)
    if dtype == "auto":
        dtype = "bfloat16" if want == "cuda" else "float32"
    return DeviceSetup(device=device_, rank=rank(), world=world_size(), local_rank=local_rank(),
                       autocast_dtype=torch.bfloat16 if dtype == "bfloat16" else None)
