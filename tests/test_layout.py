"""The run folder's layout: every path, spelled once."""

from pathlib import Path

from connectomes.pipeline.config import load_config
from connectomes.core.layout import RunLayout, TrainLayout, step_name, step_of


def test_run_layout_paths_are_exact():
    r = RunLayout(Path("/runs/demo"))
    assert r.config == Path("/runs/demo/config.yaml")
    assert r.data == Path("/runs/demo/data")
    assert r.data_meta == Path("/runs/demo/data/meta.json")
    assert r.evolve == Path("/runs/demo/evolve")
    assert r.generation(3) == TrainLayout(Path("/runs/demo/evolve/gen_03"))
    assert r.pruned(3) == Path("/runs/demo/evolve/gen_03/pruned")
    assert r.generation_record(12) == Path("/runs/demo/evolve/gen_12/generation.json")
    assert r.rewind == Path("/runs/demo/evolve/rewind.safetensors")
    assert r.connectome == Path("/runs/demo/connectome.safetensors")
    assert r.develop("random", 2) == TrainLayout(Path("/runs/demo/develop/random/seed_2"))
    assert r.eval("dense", 1) == Path("/runs/demo/eval/dense/seed_1")
    assert r.eval_step("dense", 1, 40) == Path("/runs/demo/eval/dense/seed_1/step_000040.json")
    assert r.skipped("dense", 1) == Path("/runs/demo/eval/dense/seed_1/skipped.json")
    assert r.train == TrainLayout(Path("/runs/demo/train"))
    assert r.report == Path("/runs/demo/report")
    assert r.report_md == Path("/runs/demo/report/report.md")


def test_train_layout_paths_are_exact():
    t = TrainLayout(Path("/runs/demo/develop/connectome/seed_0"))
    assert t.metrics == Path("/runs/demo/develop/connectome/seed_0/metrics.jsonl")
    assert t.steps == Path("/runs/demo/develop/connectome/seed_0/steps")
    assert t.step(120) == Path("/runs/demo/develop/connectome/seed_0/steps/step_000120")
    assert t.latest == Path("/runs/demo/develop/connectome/seed_0/latest.json")
    assert t.done == Path("/runs/demo/develop/connectome/seed_0/done.json")


def test_step_names_round_trip():
    assert step_name(0) == "step_000000" and step_name(1234567) == "step_1234567"
    assert step_of("step_000120") == 120 and step_of(step_name(7)) == 7


def test_layout_of_a_config_follows_runs_dir_name_and_data_dir(tmp_path):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=x"])
    assert RunLayout.of(cfg) == RunLayout(tmp_path / "x")
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=x", f"data.dir={tmp_path / 'shared'}"])
    assert RunLayout.of(cfg).data == tmp_path / "shared"
    assert RunLayout.of(cfg).data_meta == tmp_path / "shared" / "meta.json"


def test_what_is_present_is_listed_in_order(tmp_path):
    r = RunLayout(tmp_path)
    for g in (10, 2, 0):
        r.generation(g).root.mkdir(parents=True)
    (r.evolve / "gen_notes").mkdir()
    assert r.generations_present() == [0, 2, 10]
    r.eval("connectome", 0).mkdir(parents=True)
    for name in ("step_000080.json", "step_000000.json", "skipped.json", "step_x.json"):
        (r.eval("connectome", 0) / name).write_text("{}")
    assert r.eval_steps("connectome", 0) == {0: r.eval_step("connectome", 0, 0), 80: r.eval_step("connectome", 0, 80)}
    assert r.eval_steps("random", 0) == {}
