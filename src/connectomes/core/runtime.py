"""How a process uses the machine: its thread policy, and the ``runtime`` config section (threads, workers,
launcher). None of it changes a number a run produces, so none of it is part of a run's identity.

Thread policy. OpenMP's idle threads spin by default, waiting for the next parallel region; on a machine
with other work (a laptop, a shared node, two study workers) that spinning steals the cores the busy
threads need, and a tiny model's step can slow 10-fold. So the CLI sets ``OMP_WAIT_POLICY=PASSIVE``
before torch loads (OpenMP reads it once, at start-up) and picks the intra-op thread count itself:
the cores this process may use, divided among its workers, and capped by the model's size, since a
small model's matrix products are too small to share out across many threads. A variable the user set
(``OMP_WAIT_POLICY``, ``OMP_NUM_THREADS``) or ``runtime.threads`` wins. The thread count does not change
results because the package sets MKL's strict reproducibility mode (``MKL_CBWR=AUTO,STRICT``, connectomes/
__init__.py) before torch's first matrix product: by default MKL splits a large product's reductions by thread,
and replicate-cpu's training then differs between 1 and 2 threads from its first step (tests/test_runtime.py
trains that shape with 1 and 2 threads and compares the weights bit for bit). That is what makes the count
safe to choose, and a study's numbers the same however many workers and threads made them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from .config import SECTION, Count, PosInt, doc
from .errors import ConfigError

# Weights per intra-op thread worth having: below it, splitting a matrix product costs more in
# synchronisation than it saves (BENCHMARKS.md "Threads": the demo's 0.13M weights run fastest on
# one thread, replicate-cpu's 0.85M gains from two).
WEIGHTS_PER_THREAD = 400_000


def _threads(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"runtime.threads = {value!r}; use auto or a whole number of threads >= 1")


@dataclass
class RuntimeConfig:
    """How the study uses the machine; result-neutral: these settings never change a number, so a run folder
    continues under other values of them."""

    __pydantic_config__ = SECTION
    threads: Annotated[str | int, BeforeValidator(_threads),  # "auto" or a count
                       doc("intra-op threads per process: auto (the usable cores shared among the workers, capped by "
                           "the model's size) or a number")] = "auto"
    workers: Annotated[PosInt, doc("processes that run a study's lineages and units in parallel (study --workers)")] = 1
    launcher: Annotated[Literal["local", "slurm"], doc("where study workers run: local processes, or SLURM jobs "
                                                       "submitted with submitit (study --launcher)")] = "local"
    slurm_partition: Annotated[str, doc("SLURM partition of the worker jobs (empty: the cluster's default)")] = ""
    slurm_time_min: Annotated[PosInt, doc("SLURM time limit per worker job, minutes")] = 240
    slurm_gpus_per_task: Annotated[Count, doc("GPUs per worker job (a unit trains on all of them under torchrun)")] = 0
    slurm_cpus_per_task: Annotated[PosInt, doc("CPU cores per worker job")] = 4
    slurm_mem_gb: Annotated[PosInt, doc("memory per worker job, GB")] = 16


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a SLURM or taskset allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_threads(setting: str | int, *, weights: int | None = None, workers: int = 1,
                   cores: int | None = None) -> int:
    """The intra-op thread count for ``runtime.threads``: the number given, else the usable cores shared
    among ``workers``, capped at one thread per WEIGHTS_PER_THREAD weights of the model (when known)."""
    if setting != "auto":
        return int(setting)
    share = max(1, (cores or usable_cores()) // max(1, workers))
    if weights is not None:
        share = min(share, max(1, math.ceil(weights / WEIGHTS_PER_THREAD)))
    return share


def passive_wait() -> None:
    """OpenMP threads sleep instead of spinning when idle, and the BLAS libraries of numpy and scipy run on
    one thread, unless the user chose; call before torch or numpy loads.

    numpy and scipy each load their own OpenBLAS, each with a pool of spinning threads as large as the
    machine, beside torch's: the fMRI task's ridge fits (scikit-learn, on scipy's BLAS) then fought torch's
    threads and took 8 s instead of 1.5 s on an idle 2-core machine, 35 s at worst (BENCHMARKS.md
    "Threads"). Their matrices are small, so one thread costs little; torch's own pool is set by
    ``apply_threads``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


def apply_threads(n: int) -> int:
    """Set the intra-op thread count (unless the user pinned it with OMP_NUM_THREADS); returns the count in use."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n)
    return torch.get_num_threads()
