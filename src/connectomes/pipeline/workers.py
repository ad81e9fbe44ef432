"""Parallel study workers: several processes (local, or SLURM jobs through submitit) share one run folder.

A study is a graph of independent work items: each lineage's evolution, then each developed unit
(its training and its evaluation), which needs its lineage's evolution first (a dense unit needs
nothing). Every worker walks the whole list in the serial order and takes an item by a non-blocking
lock on ``<run>/.claims/<item>.lock`` (core.lock.claim): an item another worker holds is skipped for
now and visited again later. Every stage is resumable and skips what is already done, so a worker that
takes an item another finished passes through it in moments, and one that takes an item a dead worker
left (the kernel released its lock) continues it from its last checkpoint. A worker stops once it has
held every item, so each worker that ends well has seen the whole study done.

Only the study process (holding the run lock) writes outside units: config.yaml, the prepared data and,
once the workers are done, the report. Results do not depend on the number of workers: each item's
numbers come from its own seeds and files, and thread counts do not change this project's kernels'
results (core.runtime).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..connectome import arms
from ..core import axes, distributed, progress
from ..core.atomic import make_dirs
from ..core.entry import guarded
from ..core.errors import TrainingError, UserError
from ..core.lock import RunLockedError, claim, read_holder, run_lock
from ..core.runtime import apply_threads
from .config import Config
from .run import Run, existing_run, note, open_run
from .study import stage_develop, stage_eval, stage_evolve
from .sweep import Unit, evolutions, units

POLL_S = 0.5  # how often a worker with nothing free looks again
# the run lock's command while a study runs workers: a worker started by hand (`connectomes work RUN`) may join
# such a study, never a serial one (two writers of one unit would interleave its metrics and checkpoints)
PARALLEL_STUDY = "study (parallel workers)"


@dataclass(frozen=True)
class Item:
    """One work item: an evolution (a lineage at a shape; ``unit`` None), or a unit's training and evaluation."""

    lineage: int | None = None
    shape: str | None = None
    unit: Unit | None = None

    @property
    def key(self) -> str:
        """The item's claim file name."""
        if self.unit is None:
            return "-".join(("evolve", *axes.tag(shape=self.shape, lineage=self.lineage)))
        u = self.unit
        return "-".join(("unit", *u.tag, u.arm, f"seed_{u.seed}"))

    @property
    def label(self) -> str:
        if self.unit is None:
            return " ".join(("evolve", *axes.label(shape=self.shape, lineage=self.lineage)))
        return f"develop + eval {self.unit.label}"

    def needs(self) -> "Item | None":
        """The item this one waits for: a unit of an arm that inherits from a lineage needs its evolution."""
        if self.unit is not None and arms.get(self.unit.arm).needs_lineage:
            return Item(lineage=self.unit.lineage, shape=self.unit.shape)
        return None


def work_items(cfg: Config) -> list[Item]:
    """Every item of the study in the serial order: the evolutions, then the units."""
    return [Item(lineage=lin, shape=sh) for sh, lin in evolutions(cfg)] + [Item(unit=u) for u in units(cfg)]


def run_item(run: Run, item: Item) -> None:
    """Do one item (resumable: a finished one passes through quickly). Under torchrun every rank trains and
    rank 0 evaluates."""
    if item.unit is None:
        stage_evolve(run, lineage=item.lineage, shape=item.shape)
        return
    u = item.unit
    stage_develop(run, u)
    if distributed.is_main():
        stage_eval(run.at(u), u.arm, u.seed, label=u.label)
    distributed.barrier()


def _trained(run: Run, item: Item) -> bool:
    """Whether the item's training is on disk already (a hint for the log only: run_item decides)."""
    if item.unit is None:
        return run.layout.lineage(item.lineage, item.shape).connectome.exists()
    return run.at(item.unit).layout.develop(item.unit.arm, item.unit.seed).done.exists()


def _do(run: Run, item: Item, procs: int) -> None:
    """The item in this process, or its training in ``procs`` processes under torchrun (one per GPU)."""
    if procs <= 1:
        run_item(run, item)
        return
    cmd = ["torchrun", "--standalone", f"--nproc_per_node={procs}", "-m", "connectomes", "work", str(run.dir),
           "--item", item.key]
    if subprocess.run(cmd).returncode != 0:
        raise TrainingError(f"{item.label} failed under torchrun ({' '.join(cmd)}); its messages are above")


def work(run: Run, *, name: str, procs: int = 1, poll_s: float = POLL_S) -> int:
    """Take and do items until this worker has held every one; returns how many it trained itself."""
    pending, held, mine = work_items(run.cfg), set(), 0
    while pending:
        took = False
        for item in list(pending):
            if item.needs() is not None and item.needs() not in held:
                continue
            with claim(run.layout.claim(item.key), command=f"study {name}") as got:
                if not got:
                    continue
                fresh, t0 = not _trained(run, item), time.time()
                _do(run, item, procs)
                if fresh:
                    note(f"{name}: {item.label} done in {time.time() - t0:.0f} s")
                    mine += 1
            pending.remove(item)
            held.add(item)
            took = True
        if pending and not took:
            time.sleep(poll_s)
    return mine


def item_by_key(cfg: Config, key: str) -> Item:
    """The study's item with this claim key (``connectomes work --item``)."""
    found = {i.key: i for i in work_items(cfg)}
    if key not in found:
        raise UserError(f"no work item {key!r} in this study; its items are {', '.join(found)}")
    return found[key]


def run_claimed_item(run: Run, key: str) -> None:
    """``connectomes work --item KEY``: one item. Under torchrun the worker that started it holds its claim;
    run by hand it takes the claim itself, so it never trains an item a study worker is training (two writers
    in one folder would interleave their metrics and checkpoints)."""
    item = item_by_key(run.cfg, key)
    if distributed.world_size() > 1:
        run_item(run, item)
        return
    with claim(run.layout.claim(item.key), command=f"work --item {key}") as got:
        if not got:
            raise UserError(f"{item.label} is being done by another worker of {run.dir} (its claim "
                            f"{run.layout.claim(item.key)} is held); wait for it, or run `connectomes work` to share the rest")
        run_item(run, item)


def open_worker_run(run_dir: str | Path) -> Run:
    """A prepared run folder as a worker sees it: its resolved config, opened without writing outside units."""
    return open_run(existing_run(run_dir).cfg, owner=False)


def worker_main(run_dir: str, index: int, threads: int) -> int:
    """A worker process: open the prepared run folder and work through it; how many items it trained."""
    apply_threads(threads)
    name = f"worker {index}"
    progress.configure(lines=True, prefix=f"[{name}] ")
    run = open_worker_run(run_dir)
    return work(run, name=name, procs=procs_per_unit(run.cfg.runtime))


def worker_entry(run_dir: str, index: int, threads: int) -> int:
    """The entry point of a SLURM job (submitit pickles this function): :func:`worker_main` behind the error
    boundary every entry point shares (core.entry): a damaged file is one line and status 2, not a traceback."""
    return guarded(lambda: (worker_main(run_dir, index, threads), 0)[1], prefix=f"[worker {index}] ")


def _local_worker(run_dir: str, index: int, threads: int, parent: int) -> None:
    """A local worker process: ends when the study that started it is gone (a worker left running would write
    a run folder no lock holds any more), and exits with :func:`worker_entry`'s status."""
    _end_with_parent(parent)
    sys.exit(worker_entry(run_dir, index, threads))


def _end_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """SIGTERM this process once ``parent`` is no longer its parent (killed, even by SIGKILL: then nothing of
    the parent can stop its workers, so each worker watches for itself)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


@contextlib.contextmanager
def joined(run_dir: Path):
    """Hold the run folder for a worker started by hand (`connectomes work RUN`): as a reader, so that no study
    or stage starts writing it meanwhile; while a study with workers holds it, the worker joins that study; a
    serial study or a stage holding it refuses the worker (RunLockedError naming the holder)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(run_lock(run_dir, command="work", shared=True))
        except RunLockedError:
            if (read_holder(run_dir) or {}).get("command") != PARALLEL_STUDY:
                raise
        yield


def procs_per_unit(rt) -> int:
    """Processes that train one item together: one per GPU of a SLURM worker's allocation, else one."""
    return max(1, rt.slurm_gpus_per_task) if rt.launcher == "slurm" else 1


def run_local(run_dir: Path, workers: int, threads: int) -> list[int]:
    """Start ``workers`` worker processes on this machine and wait for them; their exit codes. A study stopped
    by Ctrl-C or SIGTERM stops its workers first (they would go on writing a run folder no lock holds)."""
    # OpenMP reads its wait policy when torch loads, which a spawned worker does on start-up
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no copied torch or lock state
    procs = [ctx.Process(target=_local_worker, args=(str(run_dir), i, threads, os.getpid()), name=f"worker {i}")
             for i in range(workers)]
    with _sigterm_as_interrupt():
        try:
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        except BaseException:
            for p in procs:
                if p.pid is not None:
                    p.terminate()
            for p in procs:
                if p.pid is not None:
                    p.join()
            raise
    return [p.exitcode for p in procs]


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt meanwhile (in the main thread), so that the study's clean-up runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_slurm(run_dir: Path, workers: int, threads: int, rt, *, cluster: str | None = None) -> list[int]:
    """Submit ``workers`` SLURM jobs (submitit; ``cluster="local"`` runs them as local processes, as the
    tests do) and wait for them; their exit codes (0 done, 1 failed). Job logs go to ``<run>/slurm/``."""
    try:
        import submitit
    except ImportError:
        raise UserError("study --launcher slurm needs submitit: pip install 'connectomes[slurm]'") from None
    make_dirs(Path(run_dir) / "slurm")  # job files inside the run, never through a link planted at slurm/
    ex = submitit.AutoExecutor(folder=Path(run_dir) / "slurm" / "%j", cluster=cluster)
    params = {"timeout_min": rt.slurm_time_min, "cpus_per_task": rt.slurm_cpus_per_task, "mem_gb": rt.slurm_mem_gb,
              "gpus_per_node": rt.slurm_gpus_per_task, "name": f"connectomes-{Path(run_dir).name}"}
    if rt.slurm_partition:
        params["slurm_partition"] = rt.slurm_partition
    ex.update_parameters(**params)
    jobs = ex.map_array(worker_entry, [str(run_dir)] * workers, list(range(workers)), [threads] * workers)
    note(f"submitted {workers} worker job(s): {', '.join(j.job_id for j in jobs)}; logs in {Path(run_dir) / 'slurm'}")
    codes = []
    for j in jobs:
        try:
            codes.append(j.result())  # worker_entry's status: 2 after the one line it printed in the job's log
        except Exception as e:  # submitit re-raises the job's failure here
            note(f"worker job {j.job_id} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}")
            codes.append(1)
    return codes


def run_parallel(cfg: Config, *, workers: int, threads: int, launcher: str = "local",
                 cluster: str | None = None) -> Path:
    """The study's stages in ``workers`` processes: prepare here, then the workers, then return the run
    folder once at least one worker saw every item done (the caller writes the report)."""
    if launcher == "slurm" and cluster is None and shutil.which("sbatch") is None:
        # submitit would quietly run the jobs as local processes instead
        raise UserError("--launcher slurm needs SLURM, and this machine has no `sbatch`: run the study on the "
                        "cluster's login node, or use --launcher local to run the workers on this machine")
    run = open_run(cfg)
    note(f"run folder {run.dir}; {workers} workers x {threads} thread(s), launcher {launcher}")
    if launcher == "slurm":
        codes = run_slurm(run.dir, workers, threads, cfg.runtime, cluster=cluster)
    else:
        codes = run_local(run.dir, workers, threads)
    if 0 not in codes:
        raise TrainingError(f"every study worker failed (exit codes {codes}); their messages are above"
                            + (f" and in {run.dir / 'slurm'}" if launcher == "slurm" else "")
                            + "; fix the cause and re-run the same command to continue")
    if any(codes):
        note(f"worker exit codes {codes}: the others finished what the failed ones left")
    return run.dir
