"""Issue 23's classes, tried as a careless or hostile user would: damaged and foreign files refused by
name through the CLI (exit 2, one line naming the file or key), every good file byte-identical,
nothing written outside the run folder. Full disks, read-only storage and symlinks: test_storage.py;
random damage to every reader: test_fuzz_readers.py."""

import json
import os
import shutil
from pathlib import Path

import pytest

from connectomes.cli import main
from connectomes.core.integrity import write_manifest
from connectomes.core.layout import RunLayout
from connectomes.pipeline.config import dump_config
from connectomes.training.checkpoint import MASKS, TRAINER, WEIGHTS
from test_reliability import DEMO, SMALL, config_file, error_line, small

STEP = Path("develop/connectome/seed_0/steps/step_000006")  # the connectome arm's final (latest) step


def copy_run(source: Path, tmp_path: Path) -> Path:
    run = tmp_path / "r"
    shutil.copytree(source, run)
    (run / "config.yaml").write_text(dump_config(small(tmp_path)))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious.txt").write_text("not the toolkit's to write")
    config_file(tmp_path, small(tmp_path))
    return run


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (lock files aside: a lock holder's text comes and goes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not p.name.endswith(".lock")}


def unchanged_but(before: dict, after: dict, *damaged: str) -> None:
    """Every file but the damaged ones is byte-identical, and none was added or removed."""
    assert after.keys() == before.keys(), sorted(after.keys() ^ before.keys())
    changed = [k for k in before if before[k] != after[k] and k not in damaged]
    assert not changed, changed


def study(tmp_path: Path) -> int:
    return main(["study", str(tmp_path / "r.yaml")])


# ------------------------------------------------------------------------------------------------
# files the manifest does not vouch for


@pytest.mark.parametrize("entry", [WEIGHTS, "state.json", MASKS])
def test_a_manifest_that_omits_a_file_is_damage(tmp_path, capsys, finished_study, entry):
    run = copy_run(finished_study, tmp_path)
    manifest = run / STEP / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["sha256"][entry]
    manifest.write_text(json.dumps(data))
    (run / STEP / WEIGHTS).write_bytes((run / STEP / WEIGHTS).read_bytes()[:-8] + b"\x00" * 8)  # unlisted, changed
    before = snapshot(tmp_path)
    # the eval verb on the step, printing to stdout (was: the changed weights evaluated, exit 0)
    assert main(["eval", str(run / STEP)]) == 2
    line = error_line(capsys)
    assert f"{manifest} does not list {entry}" in line and f"delete {run / STEP}" in line
    # the study's re-run resumes from that step (was: KeyError: 'model.safetensors')
    assert study(tmp_path) == 2
    assert f"{manifest} does not list {entry}" in error_line(capsys)
    unchanged_but(before, snapshot(tmp_path))


def test_a_resume_needs_its_trainer_state_vouched_for(tmp_path):
    from connectomes.core.errors import CheckpointError
    from connectomes.pipeline.study import open_run, stage_develop
    from connectomes.pipeline.sweep import Unit

    run = open_run(small(tmp_path), progress=False)
    assert not stage_develop(run, Unit("dense", 0), progress=False, stop_at=4).finished
    folder = run.layout.develop("dense", 0).step(4)
    data = json.loads((folder / "manifest.json").read_text())
    del data["sha256"][TRAINER]
    (folder / "manifest.json").write_text(json.dumps(data))
    before = snapshot(run.dir)
    with pytest.raises(CheckpointError, match=rf"{folder / 'manifest.json'} does not list {TRAINER}"):
        stage_develop(run, Unit("dense", 0), progress=False)
    unchanged_but(before, snapshot(run.dir))


def _garbage_vouched_for(step: Path, name: str) -> None:
    """A damaged file whose manifest was rewritten to match: only the file's own reader stands between it and a run."""
    (step / name).write_bytes(b"PK\x03\x04 not a zip, not safetensors \xff\xfe")
    write_manifest(step, [p for p in step.iterdir() if p.name != "manifest.json"])


@pytest.mark.parametrize("name, says", [(MASKS, "is not a readable safetensors file"),
                                        (TRAINER, "cannot be loaded safely")])
def test_a_damaged_checkpoint_file_is_named_by_its_reader(tmp_path, capsys, finished_study, name, says):
    run = copy_run(finished_study, tmp_path)
    _garbage_vouched_for(run / STEP, name)
    before = snapshot(tmp_path)
    assert study(tmp_path) == 2
    assert f"{run / STEP / name} {says}" in error_line(capsys)
    unchanged_but(before, snapshot(tmp_path))


DAMAGE = [  # (file under the run folder, bytes put in its place, what the one line says about it)
    ("develop/dense/seed_0/latest.json", b'{"step_dir": 5, "step": 6}', "is corrupt (no step folder name"),
    ("develop/dense/seed_0/latest.json", b'{"step_dir": "../../../outside", "step": 6}', "is corrupt (no step folder name"),
    ("data/meta.json", b'{"format": "connectomes-data/1", \xff}', "is not UTF-8 text (byte 0xff at offset 33)"),
    ("data/meta.json", b"[1, 2]", "holds a JSON list, not a JSON object"),
    ("data/meta.json", b'{"settings": {}, "splits": {"val": {"tokens": 5, "shards": ["../../x.bin"]}}, "tokenizer": "bytes"}',
     "has a malformed entry for split 'val'"),
    ("evolve/gen_00/generation.json", b'{"generation": 0, "evolve_h', "is not valid JSON (Unterminated string"),
    ("evolve/gen_00/generation.json", b'{"generation": "0"}', "does not hold generation 0's record"),
    ("config.yaml", b"name: r\nruns_dir: x\n", "is not a run's resolved config: it lacks model, data, train"),
    ("develop/dense/seed_0/metrics.jsonl", None, "line 2 is damaged (not UTF-8 text)"),
]


@pytest.mark.parametrize("rel, content, says", DAMAGE, ids=[f"{r.split('/')[-1]}-{i}" for i, (r, _, _) in enumerate(DAMAGE)])
def test_a_damaged_run_file_is_one_line_naming_it(tmp_path, capsys, finished_study, rel, content, says):
    run = copy_run(finished_study, tmp_path)
    if content is None:  # a middle line of a finished arm's metrics with a non-UTF-8 byte
        lines = (run / rel).read_bytes().split(b"\n")
        lines[1] = lines[1][:10] + b"\xff" + lines[1][11:]
        content = b"\n".join(lines)
    (run / rel).write_bytes(content)
    before = snapshot(tmp_path)
    assert study(tmp_path) == 2
    line = error_line(capsys)
    assert f"{run / rel} {says}" in line, line
    unchanged_but(before, snapshot(tmp_path))


def test_a_lock_that_is_a_folder_is_refused(tmp_path, capsys, finished_study):
    run = copy_run(finished_study, tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").mkdir()
    before = snapshot(tmp_path)
    assert main(["report", str(run)]) == 2
    assert f"{run / '.lock'}" in error_line(capsys)
    unchanged_but(before, snapshot(tmp_path))


# ------------------------------------------------------------------------------------------------
# the connectome file's provenance


def test_another_valid_connectome_in_place_of_the_run_s_is_refused_at_develop(tmp_path, capsys, finished_study):
    run = copy_run(finished_study, tmp_path)
    assert main(["connectome", str(run), "--generation", "0"]) == 0  # generation 0's: density 0.8 instead of 0.64
    capsys.readouterr()
    shutil.copy(run / "evolve" / "gen_00" / "connectome.safetensors", run / "connectome.safetensors")
    shutil.rmtree(run / "develop" / "connectome")
    before = snapshot(tmp_path)
    assert main(["develop", "-c", str(tmp_path / "r.yaml"), "--arm", "connectome"]) == 2
    line = error_line(capsys)
    assert f"{run / 'connectome.safetensors'} is not this run's evolved connectome: it records generation 0" in line
    assert "this unit needs generation 1" in line
    unchanged_but(before, snapshot(tmp_path))
    assert not (run / "develop" / "connectome").exists()


def test_the_evolved_connectome_records_its_run_lineage_and_generation(finished_study):
    from connectomes.connectome.codec import load_connectome

    meta = load_connectome(finished_study / "connectome.safetensors").meta
    assert meta["generation"] == 1 and meta["lineage"] is None and len(meta["config_hash"]) == 16
    # counted from 0 like gen_01/, and the file says so
    assert meta["generation_base"] == 0 and (finished_study / "evolve" / "gen_01").is_dir()


def test_an_evolved_connectome_written_counting_from_1_is_still_this_run_s(tmp_path, finished_study):
    """A run folder evolved before connectome files named their generation base (the last generation of two
    recorded as 2) is developed from as it is, not evolved again."""
    from connectomes.connectome.codec import load_connectome, save_connectome
    from connectomes.connectome.ternary import Connectome
    from connectomes.pipeline.evolve import evolved_connectome
    from connectomes.pipeline.plan import plan_gpt_config

    run = copy_run(finished_study, tmp_path)
    new = load_connectome(run / "connectome.safetensors")
    old = {k: v for k, v in new.meta.items() if k != "generation_base"}
    save_connectome(Connectome(new.ternary, dict(old, generation=2)), run / "connectome.safetensors")
    cfg = small(tmp_path)
    conn = evolved_connectome(cfg, plan_gpt_config(cfg), RunLayout(run))
    assert conn.equal(new) and conn.meta == new.meta


# ------------------------------------------------------------------------------------------------
# metrics.jsonl: a cut last line is a kill's, a damaged middle line is damage


def test_a_damaged_middle_metrics_line_is_reported_not_rewritten_away(tmp_path, capsys, finished_study):
    from connectomes.analysis.report import write_report

    run = copy_run(finished_study, tmp_path)
    metrics = run / "develop" / "dense" / "seed_0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:20] + "}}}" + lines[2][20:]
    metrics.write_text("".join(lines))
    before = snapshot(tmp_path)
    assert study(tmp_path) == 2  # was: the file rewritten without the record, exit 0
    assert f"{metrics} line 3 is damaged (not valid JSON" in error_line(capsys)
    unchanged_but(before, snapshot(tmp_path))
    # the report reads around it and names it
    report = write_report(run).read_text()
    assert "- `develop/dense/seed_0/metrics.jsonl`: unreadable: line 3 is damaged" in report


def test_a_cut_last_metrics_line_is_still_dropped_by_the_report(tmp_path, finished_study):
    from connectomes.analysis.results import read_metrics

    run = copy_run(finished_study, tmp_path)
    metrics = run / "develop" / "dense" / "seed_0" / "metrics.jsonl"
    whole, why, note = read_metrics(metrics)
    assert why is None and note is None and len(whole) > 2
    metrics.write_bytes(metrics.read_bytes()[:-30])
    records, why, note = read_metrics(metrics)
    assert why is None and note is None and records == whole[:-1]


# ------------------------------------------------------------------------------------------------
# result digests: a number changed by hand is named as changed


def test_a_val_loss_changed_by_hand_is_named_and_not_used(tmp_path, finished_study):
    import connectomes

    run = copy_run(finished_study, tmp_path)
    ev = run / "eval" / "dense" / "seed_0" / "step_000006.json"
    res = json.loads(ev.read_text())
    res["tasks"]["val_loss"]["loss"] = 0.123
    ev.write_text(json.dumps(res))
    metrics = run / "develop" / "connectome" / "seed_0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    rec = json.loads(lines[-1])
    rec["val_loss"] = 0.456
    lines[-1] = json.dumps(rec) + "\n"
    metrics.write_text("".join(lines))

    from connectomes.analysis.report import write_report

    report = write_report(run).read_text()
    assert "- `eval/dense/seed_0/step_000006.json`: not used: it was changed after it was written" in report
    assert (f"- `develop/connectome/seed_0/metrics.jsonl`: 1 of its {len(lines)} records (the record {len(lines)}) carry "
            "no digest or were changed after they were written") in report
    values = set(connectomes.results(run)["value"])
    assert 0.123 not in values and 0.456 not in values and "0.1230" not in report and "0.4560" not in report


def test_results_written_before_digests_are_used_and_named_as_not_verified(tmp_path, finished_study):
    """A run folder from before results were sealed still reports: its numbers are used, and named."""
    import connectomes
    from connectomes.analysis.report import write_report

    run = copy_run(finished_study, tmp_path)
    ev = run / "eval" / "dense" / "seed_0" / "step_000006.json"
    old = {k: v for k, v in json.loads(ev.read_text()).items() if k != "content_sha256"}
    ev.write_text(json.dumps(old))
    metrics = run / "develop" / "dense" / "seed_0" / "metrics.jsonl"
    records = [{k: v for k, v in json.loads(ln).items() if k != "content_sha256"} for ln in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report(run).read_text()
    assert "**Not verified:**" in report
    assert "- `eval/dense/seed_0/step_000006.json`\n" in report and "- `develop/dense/seed_0/metrics.jsonl`\n" in report
    assert "Left out" not in report
    df = connectomes.results(run)
    dense = df[(df.arm == "dense") & (df.step == 6) & (df.source == "eval") & (df.task == "val_loss")]
    assert dense.value.tolist() == [old["tasks"]["val_loss"]["loss"]]
    assert len(df[(df.arm == "dense") & (df.source == "metrics.jsonl")]) == sum("val_loss" in r for r in records)


def test_an_edited_eval_json_is_evaluated_again_not_reused(tmp_path, finished_study):
    from connectomes.pipeline.study import open_run, stage_eval

    run = copy_run(finished_study, tmp_path)
    ev = run / "eval" / "dense" / "seed_0" / "step_000006.json"
    good = json.loads(ev.read_text())
    ev.write_text(json.dumps({**good, "tasks": {**good["tasks"], "val_loss": {**good["tasks"]["val_loss"], "loss": 0.1}}}))
    stage_eval(open_run(small(tmp_path), progress=False), "dense", 0, progress=False)
    again = json.loads(ev.read_text())
    assert again["tasks"] == good["tasks"] and again["content_sha256"] != good["content_sha256"]  # timings differ


# ------------------------------------------------------------------------------------------------
# values refused up front: one line naming the key, nothing written


@pytest.mark.parametrize("bad, names", [
    ("develop.train.lr=inf", "develop.train.lr = 'inf' must be a finite number"),
    ("develop.train.lr=nan", "develop.train.lr = 'nan' must be a finite number"),
    ("develop.init_constant=1e300", "develop.init_constant = '1e300' must be > 0 and <= 1"),
    ("develop.seeds=18446744073709551616", "develop.seeds = 18446744073709551616 must be >= 0"),
    ("evolve.train.seed=-1", "evolve.train.seed = -1 must be >= 0"),
    ("model.n_layer=1e9", "model.n_layer = 1,000,000,000 must be between 1 and 1,024"),
    ("model.n_embd=1073741824", "model.n_embd = 1,073,741,824 must be between 1 and 65,536"),
    ("data.shard_tokens=1", "data.shard_tokens = 1 would cut the large split into 60,000 files"),
    ("develop.train.batch_size=1000", "develop.train.batch_size (1000) x model.block_size (32) + 1 = 32,001 tokens"),
    ("develop.train.lr=[", "the value of override 'develop.train.lr=[' is not valid YAML"),
    ("name=a\nb", "override 'name': its value holds a line break"),
    ('name="a\\tb"', "name = 'a\\tb' must be one folder name (no '/', no control characters"),
    ("name=" + "x" * 300, "name is 300 bytes long"),
])
def test_a_bad_value_is_refused_before_anything_is_written(tmp_path, capsys, bad, names):
    assert main(["study", DEMO, f"runs_dir={tmp_path / 'runs'}", "name=x", *SMALL, bad]) == 2
    assert names in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_runs_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file")
    assert main(["study", DEMO, f"runs_dir={tmp_path / 'runs'}", "name=x"]) == 2
    assert f"runs_dir = '{tmp_path / 'runs'}': {tmp_path / 'runs'} is a file, not a folder" in error_line(capsys)
    assert (tmp_path / "runs").read_text() == "a file"


def test_eval_with_no_task_is_refused(tmp_path, capsys, finished_study):
    assert main(["eval", str(finished_study / STEP), "--tasks", ""]) == 2  # was: exit 0, nothing evaluated
    assert "--tasks names no task" in error_line(capsys)


def test_eval_with_a_negative_sample_seed_is_a_usage_error(finished_study, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(finished_study / STEP), "--sample-seed", "-1"])
    assert e.value.code == 2 and "eval.sample_seed = '-1' must be >= 0" in capsys.readouterr().err


YAML_CASES = [
    ("develop:\n  train:\n    lr: 0.1\n    iters: 6\n    lr: 0.2\n", "duplicate key 'lr' (first given at line 3) at line 5, column 5"),
    ("model:\n  preset: demo\nmodel:\n  n_layer: 1\n", "duplicate key 'model' (first given at line 1) at line 3, column 1"),
    ("model:\n  preset: [demo\ndata:\n  tokenizer: bytes\n", "is not valid YAML: expected ',' or ']', but got ':' at line 3, column 5"),
]


@pytest.mark.parametrize("text, says", YAML_CASES, ids=["repeated-nested-key", "repeated-section", "syntax"])
def test_a_yaml_config_with_a_repeated_key_or_a_syntax_error_is_one_line(tmp_path, capsys, text, says):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["study", str(cfg), f"runs_dir={tmp_path / 'runs'}"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {cfg} is not valid YAML: ") and says in line, line
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------
# refused configs pin nothing; runs_dir is where a run is, not what it is


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    for i in range(40):
        (folder / f"doc{i}.txt").write_text(f"document number {i} with a few plain words in it. " * 20)
    return folder


def test_a_study_refused_at_prepare_can_be_rerun_with_a_lower_budget(tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus")  # ~40 x 1,000 bytes
    args = ["prepare", f"runs_dir={tmp_path / 'runs'}", "name=x", "data.source=local", f"data.path={corpus}",
            "data.tokenizer=bytes", "data.val_tokens=4096", "data.small_tokens=8192", "model.block_size=32",
            "evolve.train.batch_size=4", "evolve.train.micro_batch_size=4", "develop.train.batch_size=4",
            "develop.train.micro_batch_size=4", "evolve.train.eval_tokens=1024", "develop.train.eval_tokens=1024"]
    assert main([*args, "data.large_tokens=100000"]) == 2
    assert "the corpus ran out" in error_line(capsys)
    assert not (tmp_path / "runs" / "x" / "config.yaml").exists()
    assert main([*args, "data.large_tokens=20000"]) == 0  # was: "was made with a different config"
    assert (tmp_path / "runs" / "x" / "config.yaml").is_file()


def test_the_same_run_folder_by_a_relative_and_an_absolute_runs_dir_is_one_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*SMALL, "name=x"]
    assert main(["prepare", "runs_dir=runs", *args]) == 0
    before = (tmp_path / "runs" / "x" / "data" / "meta.json").read_bytes()
    assert main(["prepare", f"runs_dir={tmp_path / 'runs'}", *args]) == 0  # was: "made with a different config"
    assert (tmp_path / "runs" / "x" / "data" / "meta.json").read_bytes() == before
    capsys.readouterr()



def test_a_corpus_file_whose_name_is_not_utf8_is_named_or_skipped(tmp_path, capsys):
    corpus = _corpus(tmp_path / "corpus")
    (corpus / os.fsdecode(b"caf\xe9.txt")).write_text("a document whose file name is latin-1 " * 20)
    args = ["prepare", f"runs_dir={tmp_path / 'runs'}", "name=x", "data.source=local", f"data.path={corpus}",
            "data.tokenizer=bytes", "data.val_tokens=4096", "data.small_tokens=8192", "data.large_tokens=8192",
            "model.block_size=32", "evolve.train.batch_size=4", "evolve.train.micro_batch_size=4",
            "develop.train.batch_size=4", "develop.train.micro_batch_size=4", "evolve.train.eval_tokens=1024",
            "develop.train.eval_tokens=1024"]
    assert main(args) == 2  # was: UnicodeEncodeError writing the document list
    assert f"{corpus}/caf\\xe9.txt: the file name is not UTF-8 text" in error_line(capsys)
    assert main([*args, "data.skip_bad_files=true"]) == 0
    capsys.readouterr()
    meta = json.loads((tmp_path / "runs" / "x" / "data" / "meta.json").read_text())
    assert list(meta["source"]["skipped_files"]["files"]) == ["caf\\xe9.txt"]
