"""Parallel study workers: the same files as a serial study, whoever does which item; a killed worker's
unit finished by another; SLURM workers through submitit's local executor (real processes)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectomes.api import study
from connectomes.cli import main
from connectomes.core.lock import claim
from connectomes.pipeline.outputs import run_outputs as outputs
from connectomes.pipeline.run import open_run
from connectomes.pipeline.workers import Item, item_by_key, open_worker_run, work, work_items
from connectomes.pipeline.sweep import Unit

from test_study import tiny

ROOT = Path(__file__).resolve().parents[1]
# two lineages and both kinds of unit: items that wait for an evolution and items that do not
SHAPE = ("evolve.seeds=0,1", "develop.arms=connectome,dense", "develop.seeds=0,1")


def moved(run_dir: Path, to: str) -> Path:
    """The finished run folder renamed aside, so another study can run at the same path (paths are recorded)."""
    return run_dir.rename(run_dir.with_name(to))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    run_dir = study(tiny(tmp, "w", *SHAPE), progress=False)
    return tmp, outputs(moved(run_dir, "serial"))


def test_items_are_lineages_then_units_and_units_wait_for_their_lineage():
    cfg = tiny(Path("/nonexistent"), "w", *SHAPE)
    items = work_items(cfg)
    assert [i.key for i in items[:2]] == ["evolve-lineage_0", "evolve-lineage_1"]
    assert Item(unit=Unit("connectome", 1, lineage=1)).needs() == Item(lineage=1)
    assert Item(unit=Unit("dense", 0)).needs() is None
    assert len(items) == 2 + 2 * 2 + 2 and len({i.key for i in items}) == len(items)
    assert item_by_key(cfg, "unit-lineage_1-connectome-seed_0").unit == Unit("connectome", 0, lineage=1)


def test_two_workers_write_the_serial_study_byte_for_byte(serial):
    tmp, want = serial
    run_dir = study(tiny(tmp, "w", *SHAPE, "runtime.workers=2"), progress=False)
    got = outputs(run_dir)
    assert got.keys() == want.keys() and got == want
    assert (run_dir / "report" / "report.md").exists()
    assert len(list((run_dir / ".claims").glob("*.lock"))) == len(work_items(tiny(tmp, "w", *SHAPE)))
    moved(run_dir, "parallel")


def test_a_killed_workers_unit_is_finished_by_another(tmp_path):
    """Worker A is killed while it holds a unit with checkpoints on disk; worker B takes the unit over
    (the kernel released A's lock), resumes it from its checkpoint, and the study's files are the serial ones."""
    longer = ("develop.train.iters=40", "develop.train.warmdown_iters=20", "develop.train.save_every=2")
    cfg = tiny(tmp_path, "w", *SHAPE, *longer)
    want = outputs(moved(study(cfg, progress=False), "serial"))
    open_run(cfg, progress=False)  # the study process's part: config.yaml and the prepared data
    run_dir = cfg.run_dir
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    a = subprocess.Popen([sys.executable, "-m", "connectomes", "work", str(run_dir)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = run_dir / "develop" / "lineage_0" / "connectome" / "seed_0" / "latest.json"
    try:
        t_end = time.monotonic() + 240
        while not victim.exists():
            assert a.poll() is None, "worker A ended before the unit had a checkpoint"
            assert time.monotonic() < t_end, "worker A never checkpointed the unit"
            time.sleep(0.005)
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    assert not (victim.parent / "done.json").exists()  # killed mid-unit
    key = "unit-lineage_0-connectome-seed_0"
    with claim(run_dir / ".claims" / f"{key}.lock", command="test") as free:
        assert free  # the dead worker's lock is gone with it
    work(open_worker_run(run_dir), name="worker B", poll_s=0.01)
    assert outputs(run_dir) == want


def test_slurm_workers_through_submitits_local_executor(serial):
    pytest.importorskip("submitit")
    tmp, want = serial
    run_dir = study(tiny(tmp, "w", *SHAPE, "runtime.launcher=slurm", "runtime.workers=2"), progress=False,
                    cluster="local")
    assert outputs(run_dir) == want
    assert list((run_dir / "slurm").rglob("*.out"))  # submitit's job logs, in the run folder
    moved(run_dir, "slurm")


def test_plan_shows_the_wall_time_with_workers(capsys):
    assert main(["study", str(ROOT / "configs" / "sweep-cpu.yaml"), "--plan", "--workers", "2", "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("with 2 workers:"))
    assert "of training wall time" in line


def test_workers_and_torchrun_do_not_mix(tmp_path, monkeypatch):
    from connectomes.core.errors import UserError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="study workers and torchrun do not mix"):
        study(tiny(tmp_path, "x", "runtime.workers=2"), progress=False)


def test_work_item_by_hand_refuses_an_item_a_worker_holds(tmp_path):
    """`connectomes work RUN --item KEY` run by hand takes the item's claim: while another process holds it (a
    study worker training that item) it is refused and writes nothing; once the claim is free it does the item."""
    cfg = tiny(tmp_path, "w", *SHAPE)
    run = open_run(cfg, progress=False)
    key = "unit-dense-seed_0"
    claim_file = run.layout.claim(key)
    claim_file.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(claim_file)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["work", str(run.dir), "--item", key]) == 2
        assert not run.at(Unit("dense", 0)).layout.develop("dense", 0).root.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["work", str(run.dir), "--item", key]) == 0
    assert run.at(Unit("dense", 0)).layout.develop("dense", 0).done.exists()
