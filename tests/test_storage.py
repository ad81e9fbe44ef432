"""Issue 23, storage: a full disk and read-only storage give one line naming the file and lose nothing good;
reading verbs work on read-only storage; nothing is ever written through a symbolic link, so nothing
outside the run folder is touched.

Read-only and full storage are simulated by refusing writes under a folder with the errno the kernel
gives (``refuse_writes``): tests may run as root, where a chmod'ed folder stays writable. The one test
with a real read-only folder (chmod) skips as root. Measured by hand on real storage as well (a full
1 MiB tmpfs, a read-only bind mount): see docs/reliability.md.
"""

import builtins
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connectomes.cli import main
from test_reliability import SMALL, error_line
from test_reliability_ii import STEP, copy_run, snapshot, unchanged_but

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def refuse_writes(monkeypatch, folder: Path, code: int = errno.EROFS) -> None:
    """Every write below ``folder`` fails with ``code`` (EROFS: read-only storage, ENOSPC: a full disk), as
    the kernel would: opening for writing, creating, renaming and removing. Reads go on as before."""
    root = os.path.abspath(folder)

    def inside(path) -> bool:
        p = os.path.abspath(os.fsdecode(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""
        return p == root or p.startswith(root + os.sep)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "rename", "unlink", "rmdir")}
    real_open = builtins.open

    def fake_os_open(path, flags, mode=0o777, *, dir_fd=None):
        if inside(path) and flags & WRITE_FLAGS:
            refuse(path)
        return real["open"](path, flags, mode, dir_fd=dir_fd)

    def fake_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guard(name):
        def fake(path, *args, **kwargs):
            if inside(path) or (args and inside(args[0])):
                refuse(path)
            return real[name](path, *args, **kwargs)
        return fake

    monkeypatch.setattr(os, "open", fake_os_open)
    for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(name))
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


# ------------------------------------------------------------------------------------------------
# read-only storage


def test_on_a_read_only_run_folder_reading_verbs_work_and_writing_verbs_say_so(tmp_path, capsys, monkeypatch, finished_study):
    run = copy_run(finished_study, tmp_path)
    (run / ".lock").write_text("")  # left by the study that made it
    before = snapshot(tmp_path)
    refuse_writes(monkeypatch, run)
    for verb in (["report", str(run)], ["study", str(tmp_path / "r.yaml")]):
        assert main(verb) == 2
        assert error_line(capsys) == (f"error: cannot write {run / '.lock'} (Read-only file system); the files already in "
                                      "place are unchanged (nothing good was lost); free space or make the folder "
                                      "writable, then re-run the same command")
    # eval of a step printing to stdout takes a reader's lock: it writes nothing (was: it had to write .lock)
    assert main(["eval", str(run / STEP), "--json"]) == 0
    assert '"val_loss"' in capsys.readouterr().out
    assert main(["status", str(run)]) == 0
    capsys.readouterr()
    monkeypatch.undo()
    unchanged_but(before, snapshot(tmp_path))


def test_a_reader_on_read_only_storage_without_a_lock_file_goes_on_without_one(tmp_path, capsys, monkeypatch, finished_study):
    run = copy_run(finished_study, tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    refuse_writes(monkeypatch, run)
    assert main(["eval", str(run / STEP)]) == 0
    capsys.readouterr()
    assert not (run / ".lock").exists()


def test_a_prepared_data_dir_on_read_only_storage_is_reused(tmp_path, capsys, monkeypatch):
    shared = tmp_path / "shared"
    args = lambda name: ["prepare", f"name={name}", f"runs_dir={tmp_path / 'runs'}", f"data.dir={shared / 'd'}", *SMALL]
    assert main(args("a")) == 0
    before = snapshot(shared)
    refuse_writes(monkeypatch, shared)
    assert main(args("b")) == 0  # was: refused, the data lock is taken in the parent
    assert "prepared" in capsys.readouterr().out
    monkeypatch.undo()
    assert snapshot(shared) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a chmod'ed folder; the monkeypatched tests above cover this as root")
def test_a_chmod_read_only_run_folder(tmp_path, finished_study):
    run = copy_run(finished_study, tmp_path)
    before = snapshot(tmp_path)
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    try:
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
        rep = subprocess.run([sys.executable, "-m", "connectomes", "report", str(run)], env=env, capture_output=True, text=True)
        assert rep.returncode == 2 and len(rep.stderr.strip().splitlines()) == 1 and "Permission denied" in rep.stderr
        ev = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(run / STEP)], env=env, capture_output=True, text=True)
        assert ev.returncode == 0, ev.stderr
    finally:
        for p, m in modes.items():
            p.chmod(m)
    unchanged_but(before, snapshot(tmp_path))


# ------------------------------------------------------------------------------------------------
# a full disk


def _no_debris(run: Path) -> None:
    from test_reliability import debris

    assert debris(run) == []


def test_a_disk_full_during_a_checkpoint_names_it_and_a_rerun_recovers_exactly(tmp_path, capsys, monkeypatch, finished_study):
    import connectomes.training.checkpoint as ckpt

    run = copy_run(finished_study, tmp_path)
    shutil.rmtree(run / "develop" / "dense")
    before = snapshot(tmp_path)
    real_save = ckpt.save_file

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # part of the file made it before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full)
    assert main(["develop", "-c", str(tmp_path / "r.yaml"), "--arm", "dense"]) == 2
    step0 = run / "develop" / "dense" / "seed_0" / "steps" / "step_000000"
    assert error_line(capsys) == (f"error: cannot write {step0} (No space left on device); the files already in place "
                                  "are unchanged (nothing good was lost); free space or make the folder writable, then "
                                  "re-run the same command")
    _no_debris(run)
    after = snapshot(tmp_path)
    unchanged_but(before, {k: v for k, v in after.items() if not k.startswith("r/develop/dense")})
    monkeypatch.setattr(ckpt, "save_file", real_save)  # space returns
    assert main(["develop", "-c", str(tmp_path / "r.yaml"), "--arm", "dense"]) == 0
    capsys.readouterr()
    final = "develop/dense/seed_0/steps/step_000006/model.safetensors"
    assert (run / final).read_bytes() == (finished_study / final).read_bytes()


def test_a_library_s_own_words_for_a_full_disk_are_recognised(tmp_path, monkeypatch):
    """safetensors and torch.save report a full disk as their own exception types (a RuntimeError
    "unexpected pos" from torch); the file system then has no room left, which is what is said."""
    from connectomes.core.atomic import atomic_write
    from connectomes.core.errors import StorageError

    target = tmp_path / "trainer.pt"
    target.write_bytes(b"the good previous file")
    real_statvfs = os.statvfs
    full = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 0, 0, 0, 255))
    monkeypatch.setattr(os, "statvfs", lambda p: full if str(p).startswith(str(tmp_path)) else real_statvfs(p))

    def torch_full(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    with pytest.raises(StorageError, match=rf"cannot write {target} \(no space left on device: 0 bytes free\)"):
        atomic_write(target, torch_full)
    assert target.read_bytes() == b"the good previous file" and sorted(p.name for p in tmp_path.iterdir()) == ["trainer.pt"]
    monkeypatch.setattr(os, "statvfs", real_statvfs)  # with room left, the same error is a bug and keeps its traceback
    with pytest.raises(RuntimeError, match="unexpected pos"):
        atomic_write(target, torch_full)


@pytest.mark.parametrize("where, verb", [("eval", "study"), ("report", "report")])
def test_a_disk_full_during_an_evaluation_or_the_report_names_the_file(tmp_path, capsys, monkeypatch, finished_study, where, verb):
    run = copy_run(finished_study, tmp_path)
    if where == "eval":
        (run / "eval" / "dense" / "seed_0" / "step_000006.json").unlink()  # to be evaluated again
    before = snapshot(tmp_path)
    refuse_writes(monkeypatch, run / where, errno.ENOSPC)
    assert main([verb, str(tmp_path / "r.yaml") if verb == "study" else str(run)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: cannot write {run / where}/") and "(No space left on device)" in line
    assert "nothing good was lost" in line
    monkeypatch.undo()
    unchanged_but(before, snapshot(tmp_path))
    _no_debris(run)


# ------------------------------------------------------------------------------------------------
# symbolic links: never written through


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, capsys, finished_study):
    run = copy_run(finished_study, tmp_path)
    target = tmp_path / "outside" / "precious.txt"
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(target)
    before = snapshot(tmp_path)
    assert main(["report", str(run)]) == 2  # was: the target truncated
    assert error_line(capsys).startswith(f"error: {run / '.lock'} is a symbolic link; the toolkit never writes through one")
    unchanged_but(before, snapshot(tmp_path))


def test_links_planted_at_outputs_and_temporaries_are_replaced_not_followed(tmp_path, finished_study):
    from connectomes.analysis.report import write_report

    run = copy_run(finished_study, tmp_path)
    outside = tmp_path / "outside"
    for name in ("report.md", f"report.md.tmp{os.getpid()}", "val_loss.png", f"val_loss.png.tmp{os.getpid()}"):
        (outside / name).write_text("outside")
        (run / "report" / name).unlink(missing_ok=True)
        (run / "report" / name).symlink_to(outside / name)
    metrics = run / "develop" / "dense" / "seed_0" / "metrics.jsonl"
    shutil.move(metrics, outside / "metrics.jsonl")
    metrics.symlink_to(outside / "metrics.jsonl")
    before = snapshot(outside)
    write_report(run)
    assert main(["study", str(tmp_path / "r.yaml")]) == 0  # resumes every arm: rewrites metrics.jsonl
    assert snapshot(outside) == before
    for p in (run / "report" / "report.md", run / "report" / "val_loss.png", metrics):
        assert p.is_file() and not p.is_symlink()
    assert not list((run / "report").glob("*.tmp*"))


def test_debris_that_is_a_symlink_is_unlinked_never_followed(tmp_path):
    from connectomes.core.atomic import sweep_debris

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.txt").write_text("kept")
    run = tmp_path / "run"
    run.mkdir()
    (run / f"pruned.old{pid}").symlink_to(outside)  # would be renamed to pruned/, a link out of the run
    (run / f"steps.tmp{pid}").symlink_to(outside)  # would be removed with rmtree through the link
    removed = sweep_debris(run)
    assert sorted(p.name for p in removed) == [f"pruned.old{pid}", f"steps.tmp{pid}"]
    assert list(run.iterdir()) == [] and (outside / "kept.txt").read_text() == "kept"


def test_readers_share_a_run_folder_and_keep_a_writer_out(tmp_path):
    """A reader's hold (eval printing to stdout) lets other readers in and refuses a writer, naming a reader."""
    from connectomes.core.lock import run_lock

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    probe = ("import sys; from connectomes.core.lock import run_lock\n"
             "for mode in ('r', 'w'):\n"
             "    try:\n        with run_lock(sys.argv[1], command='x', shared=mode == 'r'): print('held')\n"
             "    except Exception as e: print(type(e).__name__, e)")
    with run_lock(tmp_path, command="eval", shared=True):
        reader, writer = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], env=env, capture_output=True,
                                        text=True).stdout.splitlines()  # one process: a second reader, then a writer
        assert reader == "held"
        assert writer.startswith("RunLockedError run folder") and "in use by another process (a reader" in writer
        with run_lock(tmp_path, command="eval", shared=True):  # nested in one process: a counter
            pass
        with pytest.raises(RuntimeError, match="inside a read-only hold"):
            with run_lock(tmp_path, command="report"):
                pass
    with run_lock(tmp_path, command="report"):  # released: a writer gets it, and may read within its own hold
        with run_lock(tmp_path, command="eval", shared=True):
            pass
