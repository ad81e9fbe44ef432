"""One writer per run folder: real processes, a SIGKILLed holder, nesting, torchrun ranks."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectomes.core.errors import UserError
from connectomes.core.lock import LOCK_NAME, RunLockedError, read_holder, run_lock

SRC = str(Path(__file__).resolve().parents[1] / "src")

HOLD = textwrap.dedent("""
    import sys, time
    from connectomes.core.lock import run_lock
    with run_lock(sys.argv[1], command="evolve"):
        print("held", flush=True)
        time.sleep(600)
""")

TRY = textwrap.dedent("""
    import sys
    from connectomes.core.errors import UserError
    from connectomes.core.lock import run_lock
    try:
        with run_lock(sys.argv[1], command="report"):
            print("acquired", flush=True)
    except UserError as e:
        print("refused:", e, flush=True)
""")


def _env():
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _holder(run_dir: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def _try(run_dir: Path) -> str:
    out = subprocess.run([sys.executable, "-c", TRY, str(run_dir)], capture_output=True, text=True, env=_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_process_is_refused_naming_the_holder_then_takes_over_after_sigkill(tmp_path):
    run = tmp_path / "run"
    first = _holder(run)
    try:
        said = _try(run)
        assert said.startswith("refused:")
        assert f"process {first.pid} on " in said and "running 'evolve'" in said and " since 20" in said
        assert str(run) in said and "wait for it to finish" in said and "report was not started" in said
        holder = read_holder(run)
        assert holder["pid"] == first.pid and holder["command"] == "evolve"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The dead holder's info is still in the file; the kernel released its flock.
    assert read_holder(run)["pid"] == first.pid
    assert _try(run) == "acquired"
    assert (run / LOCK_NAME).read_text() == ""  # released cleanly: no stale holder named


def test_holder_info_while_held_and_cleared_after(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, command="study"):
        h = read_holder(run)
        assert h["pid"] == os.getpid() and h["command"] == "study" and h["argv"] == sys.argv
    assert read_holder(run) is None


def test_leftover_garbage_info_file_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text('{"pid": 999999, "comm')  # a holder killed mid-write
    with run_lock(run, command="develop"):
        assert read_holder(run)["pid"] == os.getpid()


def test_nested_holds_in_one_process_release_at_the_outermost(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, command="study"):
        with run_lock(run / ".", command="evolve"):  # a stage the study calls; same folder, other spelling
            assert read_holder(run)["command"] == "study"
        assert read_holder(run)["command"] == "study"  # still held by the outer hold
        assert _try(run).startswith("refused:")
    assert _try(run) == "acquired"


def test_an_error_inside_releases_the_lock(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError):
        with run_lock(run, command="eval"):
            raise ValueError("boom")
    with run_lock(run, command="eval"):
        pass


def test_refusal_is_a_user_error():
    assert issubclass(RunLockedError, UserError)


def test_only_rank_zero_locks_under_torchrun(tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = _holder(run)
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        with run_lock(run, command="evolve"):  # rank 1 shares its job's lock: no attempt, no refusal
            assert read_holder(run)["pid"] == first.pid
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunLockedError, match=f"process {first.pid} "):
            with run_lock(run, command="evolve"):
                pass
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_a_named_lock_file_guards_a_folder_from_its_parent(tmp_path):
    data = tmp_path / "data"
    with run_lock(tmp_path, command="prepare", name=".data.lock"):
        assert read_holder(tmp_path, ".data.lock")["command"] == "prepare"
        assert not data.exists()  # nothing is created inside the folder that prepare will swap into place
        with run_lock(tmp_path, command="study"):  # another lock file of the same folder: independent
            assert read_holder(tmp_path)["command"] == "study"
    assert read_holder(tmp_path, ".data.lock") is None
