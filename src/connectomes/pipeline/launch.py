"""Running a study: in this process (pipeline.study), or in runtime.workers local processes or SLURM jobs
(pipeline.workers). The one place that choice is made, and where a process's thread count is set.

The report is not the pipeline's: the pipeline never imports the analysis layer, so the study's entry
point above both (connectomes.api.study) runs :func:`run_study` and then writes the report.
"""

from __future__ import annotations

from pathlib import Path

from ..core import distributed
from ..core.errors import UserError
from ..core.runtime import apply_threads, choose_threads
from .config import Config
from .plan import plan_gpt_config
from .study import run_serial
from .workers import run_parallel


def use_threads(cfg: Config, workers: int = 1) -> int:
    """Set this process's intra-op threads (core.runtime): runtime.threads, else the usable cores shared among
    ``workers`` and capped by the model's size. Returns the count in use."""
    return apply_threads(worker_threads(cfg, workers))


def worker_threads(cfg: Config, workers: int) -> int:
    return choose_threads(cfg.runtime.threads, weights=plan_gpt_config(cfg).num_weights, workers=workers)


def run_study(cfg: Config, *, progress: bool = True, stop=None, cluster: str | None = None) -> Path | None:
    """Every stage of the study but the report, resumable, where runtime.* says: in this process, or in
    runtime.workers processes (launcher local) or SLURM jobs (launcher slurm). Returns the run folder once
    everything is done, None when stopped early (``stop``, tests: see pipeline.study.run_serial).
    ``cluster="local"`` runs SLURM workers as local processes (tests)."""
    rt = cfg.runtime
    if rt.workers == 1 and rt.launcher != "slurm":
        use_threads(cfg)
        return run_serial(cfg, progress=progress, stop=stop)
    if distributed.world_size() > 1:
        raise UserError("study workers and torchrun do not mix: run `connectomes study` without torchrun and "
                        "let each worker train its units on its GPUs (runtime.slurm_gpus_per_task)")
    return run_parallel(cfg, workers=rt.workers, threads=worker_threads(cfg, rt.workers), launcher=rt.launcher,
                        cluster=cluster)
