"""Reliability III (issue 34): workers and launchers, the results table, new inputs and new folders under the
guarantees of docs/reliability.md. Each test injects one scenario of the issue and fails on the code before it."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectomes.api import study
from connectomes.cli import main
from connectomes.core.errors import StorageError
from connectomes.core.lock import claim, run_lock
from connectomes.pipeline.workers import PARALLEL_STUDY, worker_entry

from helpers import flip_bit
from test_reliability import config_file, error_line
from test_study import tiny

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ("develop.arms=connectome,dense", "develop.seeds=0")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny study (both kinds of unit), copied by each test that changes it."""
    tmp = tmp_path_factory.mktemp("r3")
    return study(tiny(tmp, "done", *PLAIN), progress=False)


def copied(run: Path, tmp_path: Path, name: str = "done") -> Path:
    """A copy of a finished run folder at ``tmp_path/name``, its config.yaml pointing at the copy."""
    dst = tmp_path / name
    shutil.copytree(run, dst)
    cfg = dst / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(run.parent), str(tmp_path)).replace(f"name: {run.name}", f"name: {name}"))
    return dst


@pytest.fixture(autouse=True)
def plain_progress():
    """A worker run in this process (worker_entry) prefixes its progress lines; the next test gets them plain."""
    from connectomes.core import progress

    yield
    progress.configure(lines=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- workers and launchers -------------------------------------------------------------------------------------

def test_a_worker_on_a_damaged_unit_prints_one_line_and_exits_2(finished, tmp_path, capsys):
    run = copied(finished, tmp_path)
    step = run / "develop" / "dense" / "seed_0" / "steps" / "step_000010"
    flip_bit(step / "model.safetensors")
    assert worker_entry(str(run), 0, 1) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    errors = [ln for ln in err if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("[worker 0] error: ")
    assert f"{step / 'model.safetensors'} is corrupt" in errors[0]


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_claim_that_is_a_folder_or_a_link_is_one_line(finished, tmp_path, capsys, kind):
    run = copied(finished, tmp_path)
    target = tmp_path / "elsewhere.lock"
    target.write_text("")
    claims = run / ".claims"
    shutil.rmtree(claims, ignore_errors=True)
    claims.mkdir()
    bad = claims / "evolve.lock"
    bad.mkdir() if kind == "folder" else bad.symlink_to(target)
    assert worker_entry(str(run), 0, 1) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(bad) in err
    assert target.read_text() == ""


def test_the_study_s_worker_processes_report_damage_in_one_line_each(finished, tmp_path):
    """The spawned workers of `study --workers 2` (real processes): no traceback, each one line, exit 2."""
    run = copied(finished, tmp_path)
    flip_bit(run / "develop" / "dense" / "seed_0" / "steps" / "step_000010" / "model.safetensors")
    cfg = run / "config.yaml"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "connectomes", "study", str(cfg), "--workers", "2"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert sum("error:" in ln and "is corrupt" in ln for ln in p.stderr.splitlines()) >= 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: every study worker failed")


def _hold(run: Path, command: str, shared: bool = False) -> subprocess.Popen:
    """Another process holding the run lock (as a writer running ``command``, or as a reader) until killed."""
    p = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                          "from connectomes.core.lock import run_lock\n"
                          f"with run_lock({str(run)!r}, command=sys.argv[1], shared={shared}):\n"
                          "    print('held', flush=True); time.sleep(60)", command],
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert p.stdout.readline().strip() == "held"
    return p


def test_work_is_refused_while_a_serial_study_holds_the_run_and_joins_a_parallel_one(finished, tmp_path, capsys):
    run = copied(finished, tmp_path)
    metrics = {p: p.read_bytes() for p in run.rglob("metrics.jsonl")}
    holder = _hold(run, "study")
    try:
        assert main(["work", str(run)]) == 2
        line = error_line(capsys)
        assert f"process {holder.pid}" in line and "'study'" in line
    finally:
        holder.kill()
        holder.wait()
    assert {p: p.read_bytes() for p in run.rglob("metrics.jsonl")} == metrics
    # a study with workers holds it as PARALLEL_STUDY: a worker started by hand joins it (all done: exit 0)
    holder = _hold(run, PARALLEL_STUDY)
    try:
        assert main(["work", str(run)]) == 0
    finally:
        holder.kill()
        holder.wait()
    # a worker started by hand holds the run as a reader: a stage is kept out while it works
    holder = _hold(run, "work", shared=True)
    try:
        assert main(["develop", "--config", str(run / "config.yaml"), "--arm", "dense"]) == 2
        assert "in use by" in error_line(capsys)
    finally:
        holder.kill()
        holder.wait()


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            for k in map(int, kids):
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_study_s_workers_stop(tmp_path, how):
    """SIGTERM to the study stops its workers at once; after SIGKILL (no clean-up possible) each worker sees its
    parent gone and ends within a second or so; then a stage is admitted and nothing writes any more."""
    longer = ("develop.train.iters=400", "develop.train.warmdown_iters=20", "develop.train.save_every=50",
              "evolve.train.iters=400", "evolve.train.warmdown_iters=20")
    cfg = config_file(tmp_path, tiny(tmp_path, "k", *PLAIN, *longer))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, "-m", "connectomes", "study", str(cfg), "--workers", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "k"
    try:
        t_end = time.monotonic() + 240
        while not list(run.glob("**/metrics.jsonl")):
            assert parent.poll() is None and time.monotonic() < t_end, "the study never started training"
            time.sleep(0.05)
        workers = _descendants(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(getattr(signal, how))
        parent.wait(timeout=60)
        t_end = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < t_end:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a worker outlived its study"
    finally:
        for w in _descendants(parent.pid) if parent.poll() is None else ():
            os.kill(w, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    with run_lock(run, command="develop"):
        pass  # admitted: nobody holds the run, and nobody writes it
    sizes = {p: p.stat().st_size for p in run.rglob("metrics.jsonl")}
    time.sleep(1.0)
    assert {p: p.stat().st_size for p in run.rglob("metrics.jsonl")} == sizes


def test_launcher_slurm_without_slurm_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    runs = tmp_path / "runs"
    cfg = config_file(tmp_path, tiny(runs, "s"))
    assert main(["study", str(cfg), "--launcher", "slurm", "--workers", "2"]) == 2
    line = error_line(capsys)
    assert "needs SLURM" in line and "sbatch" in line and "--launcher local" in line
    assert not (runs / "s" / "config.yaml").exists()  # refused before the run is prepared


def test_a_step_is_retired_on_resume_after_a_kill_before_its_retirement(finished, tmp_path, monkeypatch):
    """Killed between latest.json naming step 6 and retiring step 5 (a kept step: its trainer.pt goes): the
    re-run's folder is the uninterrupted run's, file for file and byte for byte."""
    from connectomes.pipeline.run import existing_run, open_run
    from connectomes.pipeline.study import stage_develop
    from connectomes.pipeline.sweep import Unit
    from connectomes.training.checkpoint import CheckpointManager

    run_dir = copied(finished, tmp_path)
    trained = run_dir / "develop" / "dense" / "seed_0"
    run = open_run(existing_run(run_dir).cfg, progress=False)
    shutil.rmtree(trained)
    stage_develop(run, Unit("dense", 0), progress=False)  # uninterrupted, in this folder (state.json names it)
    want = {p.relative_to(trained): p.read_bytes() for p in sorted(trained.rglob("*")) if p.is_file()}
    shutil.rmtree(trained)
    retire = CheckpointManager._retire

    def killed(self, folder):
        if folder.name == "step_000005":
            raise KeyboardInterrupt  # the kill, right before the retirement
        retire(self, folder)

    monkeypatch.setattr(CheckpointManager, "_retire", killed)
    with pytest.raises(KeyboardInterrupt):
        stage_develop(run, Unit("dense", 0), progress=False)
    monkeypatch.setattr(CheckpointManager, "_retire", retire)
    assert (trained / "steps" / "step_000005" / "trainer.pt").exists()
    stage_develop(run, Unit("dense", 0), progress=False)
    got = {p.relative_to(trained): p.read_bytes() for p in sorted(trained.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(want)
    assert {k: v for k, v in got.items() if k.name != "done.json"} == {k: v for k, v in want.items() if k.name != "done.json"}


# -- the results table ----------------------------------------------------------------------------------------

def test_results_has_a_row_for_every_result_file_with_its_status(finished, tmp_path):
    import connectomes
    from connectomes.core.integrity import DIGEST_KEY

    run = copied(finished, tmp_path)
    df = connectomes.results(run)
    assert set(df.status) == {"current"} and "why" in df.columns
    ev = run / "eval" / "dense" / "seed_0"
    edited, cut, unsealed = ev / "step_000010.json", ev / "step_000005.json", ev / "step_000000.json"
    res = json.loads(edited.read_text())
    res["tasks"]["val_loss"]["loss"] = res["tasks"]["val_loss"]["loss"] + 1  # digest kept: changed by hand
    edited.write_text(json.dumps(res))
    cut.write_bytes(cut.read_bytes()[:40])
    res = json.loads(unsealed.read_text())
    res["tasks"]["val_loss"]["loss"] = res["tasks"]["val_loss"]["loss"] + 1  # edited, and its digest removed
    del res[DIGEST_KEY]
    unsealed.write_text(json.dumps(res))
    df = connectomes.results(run)
    dense = df[(df.arm == "dense") & (df.source == "eval")]
    by_step = {s: set(dense[dense.step == s].status) for s in (0, 5, 10)}
    assert by_step == {0: {"unverified"}, 5: {"unreadable"}, 10: {"unreadable"}}
    assert dense[dense.step == 10].why.iloc[0] and dense[dense.step == 10].value.isna().all()
    assert dense[dense.step == 0].value.notna().all()
    # the other unit's rows are as they were
    assert set(df[df.arm == "connectome"].status) == {"current"}


# -- connectome files ------------------------------------------------------------------------------------------

def test_a_rerun_connectome_is_byte_identical(tmp_path):
    """Written from the live model first, then, after it is deleted (a kill before its write), rebuilt from the
    files: the same bytes (the tensors were listed in another order)."""
    cfg = tiny(tmp_path, "c", *PLAIN)
    run = study(cfg, progress=False)
    want = sha(run / "connectome.safetensors")
    (run / "connectome.safetensors").unlink()
    study(cfg, progress=False)
    assert sha(run / "connectome.safetensors") == want


# -- values and resources --------------------------------------------------------------------------------------

def test_a_shape_string_is_never_read_as_a_number(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: s\nruns_dir: {tmp_path}\nmodel:\n  shapes: [0x128, 1x64]\n")
    assert main(["study", str(cfg), "--plan"]) == 2
    line = error_line(capsys)
    assert "'0x128'" in line and "296" not in line


def test_every_shape_s_memory_is_checked_before_anything_is_written(tmp_path, capsys):
    cfg = config_file(tmp_path, tiny(tmp_path, "big", "model.shapes=1x64,48x32768"))
    assert main(["study", str(cfg)]) == 2
    line = error_line(capsys)
    assert "48x32768" in line and "needs about" in line
    assert not (tmp_path / "big" / "config.yaml").exists()
    assert not list((tmp_path / "big").rglob("*.safetensors"))


def test_anatomy_out_naming_a_file_is_refused_before_the_analysis(finished, tmp_path, capsys, monkeypatch):
    from connectomes.analysis.anatomy import target

    run = copied(finished, tmp_path)
    out = tmp_path / "a_file"
    out.write_text("keep")
    monkeypatch.setattr(target, "analyse_run", lambda *a, **k: pytest.fail("analysed before checking --out"))
    assert main(["anatomy", str(run), "--out", str(out)]) == 2
    assert str(out) in error_line(capsys) and out.read_text() == "keep"


# -- folders followed through symbolic links -------------------------------------------------------------------

def test_a_linked_report_anatomy_folder_is_never_written_through(finished, tmp_path, capsys):
    run = copied(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / "report" / "anatomy", ignore_errors=True)
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "anatomy").symlink_to(elsewhere)
    assert main(["anatomy", str(run)]) == 2
    assert f"{run / 'report' / 'anatomy'} is a symbolic link" in error_line(capsys)
    assert main(["report", str(run)]) == 0  # the report says the anatomy was not computed
    assert list(elsewhere.iterdir()) == []
    assert "is a symbolic link" in (run / "report" / "report.md").read_text()


def test_linked_claims_and_slurm_folders_are_never_written_through(finished, tmp_path):
    from connectomes.core.atomic import make_dirs

    run = copied(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / ".claims", ignore_errors=True)
    (run / ".claims").symlink_to(elsewhere)
    with pytest.raises(StorageError, match=r"\.claims is a symbolic link"):
        with claim(run / ".claims" / "x.lock", command="test"):
            pass
    (run / "slurm").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="slurm is a symbolic link"):
        make_dirs(run / "slurm" / "123")
    assert list(elsewhere.iterdir()) == []


# -- messages --------------------------------------------------------------------------------------------------

def test_a_mask_holding_a_2_names_its_file(finished, tmp_path):
    from safetensors.torch import load_file, save_file

    from connectomes.core.errors import CheckpointError
    from connectomes.training.checkpoint import load_masks

    run = copied(finished, tmp_path)
    step = run / "develop" / "connectome" / "seed_0" / "steps" / "step_000010"
    masks = load_file(str(step / "masks.safetensors"))
    name = sorted(masks)[0]
    masks[name].view(-1)[0] = 2
    save_file(masks, str(step / "masks.safetensors"))
    with pytest.raises(CheckpointError, match=rf"mask {name} in {step / 'masks.safetensors'} holds values other"):
        load_masks(step)


def test_a_step_folder_without_state_json_is_not_said_not_to_exist(finished, tmp_path, capsys):
    run = copied(finished, tmp_path)
    step = run / "develop" / "dense" / "seed_0" / "steps" / "step_000010"
    (step / "state.json").unlink()
    assert main(["eval", str(step), "--tasks", "val_loss"]) == 2
    line = error_line(capsys)
    assert "does not exist" not in line and f"{step / 'state.json'} is missing" in line


def test_two_evals_into_one_out_dir_at_once_the_second_is_refused_naming_the_first(finished, tmp_path, capsys):
    run = copied(finished, tmp_path)
    out = tmp_path / "eval_out"
    out.mkdir()
    holder = _hold(out, "eval")
    try:
        steps = run / "develop" / "dense" / "seed_0" / "steps"
        assert main(["eval", str(steps / "step_000010"), "--tasks", "val_loss", "--out-dir", str(out)]) == 2
        assert f"process {holder.pid}" in error_line(capsys)
    finally:
        holder.kill()
        holder.wait()
    assert [p.name for p in out.iterdir()] == [".lock"]


def test_another_run_s_pruned_generation_copied_in_is_refused_and_a_moved_run_still_works(finished, tmp_path, capsys):
    other = study(tiny(tmp_path, "other", *PLAIN, "evolve.train.lr=0.002"), progress=False)
    run = copied(finished, tmp_path)
    assert main(["anatomy", str(run), "--draws", "99"]) == 0  # its own: fine
    moved = run.rename(tmp_path / "moved")  # a run folder moved as a whole is still its own
    assert main(["anatomy", str(moved), "--draws", "99"]) == 0
    capsys.readouterr()
    pruned = moved / "evolve" / "gen_01" / "pruned"
    shutil.rmtree(pruned)
    shutil.copytree(other / "evolve" / "gen_01" / "pruned", pruned)
    assert main(["anatomy", str(moved), "--draws", "99"]) == 2
    line = error_line(capsys)
    assert f"{pruned} was made by another evolution" in line and "copied from another run" in line


# -- evaluation data -------------------------------------------------------------------------------------------

@pytest.fixture
def eval_root(tmp_path, data_root):
    from test_blimp import make_eval_root

    return make_eval_root(tmp_path / "eval_data", data_root)


@pytest.mark.parametrize("task", ["blimp", "blimp_supplement"])
def test_an_empty_pair_file_is_refused_naming_it(tmp_path, eval_root, task):
    from connectomes.core.errors import DataError
    from test_blimp import run_task, uniform_model

    folder = eval_root / task / ("data" if task == "blimp" else "")
    empty = sorted(folder.glob("*.jsonl"))[0]
    empty.write_text("")
    with pytest.raises(DataError, match=rf"{empty} holds no .* pairs \(an empty file\)"):
        run_task(uniform_model(), task, eval_root)


def test_a_removed_paradigm_makes_every_blimp_result_stale_and_is_scored_again(tmp_path, eval_root):
    import connectomes

    cfg = tiny(tmp_path, "b", *PLAIN, "eval.tasks=val_loss,blimp", f"eval.data_root={eval_root}")
    run = study(cfg, progress=False)
    df = connectomes.results(run)
    blimp_rows = df[df.task == "blimp"]
    assert len(blimp_rows) >= 2 and set(blimp_rows.status) == {"current"}
    removed = eval_root / "blimp" / "data" / "passive_1.jsonl"
    removed.unlink()
    df = connectomes.results(run)
    assert set(df[df.task == "blimp"].status) == {"stale"}
    assert set(df[df.task == "val_loss"].status) == {"current"}  # the file's other task is untouched
    study(cfg, progress=False)  # every arm's BLiMP is scored again, on the paradigms there are now
    df = connectomes.results(run)
    assert set(df[df.task == "blimp"].status) == {"current"}
    for p in run.glob("eval/*/seed_0/step_000010.json"):
        assert "passive_1.jsonl" not in json.loads(p.read_text())["tasks"]["blimp"]["data_sha256"]


def test_a_compile_cache_that_is_a_file_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache_file"
    cache.write_text("not a folder")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    cfg = config_file(tmp_path, tiny(tmp_path, "c", *PLAIN, "evolve.train.compile=true", "develop.train.compile=true"))
    assert main(["study", str(cfg)]) == 2
    line = error_line(capsys)
    assert f"TORCHINDUCTOR_CACHE_DIR={cache} is not a folder" in line and "writable folder" in line
    assert not list((tmp_path / "c").rglob("*.safetensors"))


def test_a_best_step_that_metrics_jsonl_disputes_is_flagged_and_best_json_is_the_source(tmp_path):
    from connectomes.analysis.results import RunResults
    from connectomes.analysis.selection import selection_lines, unit_selection
    from connectomes.pipeline.sweep import Unit

    run = study(tiny(tmp_path, "kb", *PLAIN, "develop.train.keep_best=true", "develop.train.eval_every=2"),
                progress=False)
    trained = run / "develop" / "dense" / "seed_0"
    best = json.loads((trained / "best.json").read_text())["step"]
    rows = unit_selection(RunResults(run), Unit("dense", 0))
    assert rows["best_step"] == best and rows["best_disagrees"] is None
    lines = (trained / "metrics.jsonl").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if json.loads(ln).get("step") != best or "val_loss" not in json.loads(ln)]
    assert len(kept) < len(lines)
    (trained / "metrics.jsonl").write_text("".join(kept))  # the best record deleted
    rd = RunResults(run)
    row = {"unit": Unit("dense", 0), **unit_selection(rd, Unit("dense", 0))}
    assert row["best_step"] == best  # best.json stays the one source
    assert row["best_disagrees"].startswith(f"dense seed 0 (best.json: step {best}; metrics.jsonl's lowest: step ")
    assert any("Best step in dispute" in ln for ln in selection_lines(rd, [row]))
