"""The study's entry point, above the pipeline and the analysis: the pipeline runs the study and never
imports the analysis layer, so what runs one and then writes its report lives here. The ``study`` verb
calls it; a script may call it the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

from .core import distributed
from .pipeline.config import Config
from .pipeline.launch import run_study
from .pipeline.run import note


def study(cfg: Config, *, progress: bool = True, stop=None, cluster: str | None = None) -> Path | None:
    """The whole study: every stage, resumable, where runtime.* says (pipeline.launch.run_study: in this
    process, local workers or SLURM jobs), then the report once it is all done. Returns the run folder,
    None when stopped early (``stop``, tests: see pipeline.study.run_serial). ``cluster="local"`` runs SLURM
    workers as local processes (tests)."""
    from .analysis.report import write_report  # scipy and matplotlib: loaded only by the verbs that report

    t0 = time.time()
    run_dir = run_study(cfg, progress=progress, stop=stop, cluster=cluster)
    if run_dir is not None and distributed.is_main():
        note(f"study finished in {time.time() - t0:.0f} s; report: {write_report(run_dir)}")
    return run_dir
