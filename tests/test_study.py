"""The study: one command end to end, resumable after a kill anywhere with identical results."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from connectomes.cli import main
from connectomes.pipeline.config import load_config
from connectomes.api import study as run_study
from connectomes.pipeline.study import status
from connectomes.pipeline.sweep import Unit


def tiny(tmp_path: Path, name: str, *extra: str):
    return load_config(None, [
        f"name={name}", f"runs_dir={tmp_path}", "model.preset=demo", "model.n_layer=1", "model.block_size=32",
        "data.source=synthetic", "data.tokenizer=bytes", "data.large_tokens=120000",
        "data.small_tokens=30000", "data.val_tokens=8192",
        "evolve.generations=2", "evolve.train.iters=12", "evolve.train.warmup_iters=2", "evolve.train.warmdown_iters=6",
        "evolve.train.batch_size=8", "evolve.train.micro_batch_size=8", "evolve.train.eval_every=6",
        "evolve.train.eval_tokens=2048", "evolve.train.save_every=4",
        "develop.arms=connectome,random,dense", "develop.seeds=0,1", "develop.train.iters=10",
        "develop.train.warmup_iters=2", "develop.train.warmdown_iters=6", "develop.train.batch_size=8",
        "develop.train.micro_batch_size=8", "develop.train.eval_every=5", "develop.train.eval_tokens=2048",
        "develop.train.save_every=3", "develop.train.keep_steps=0,5", "eval.tasks=val_loss", "eval.step_tasks=val_loss",
        *extra,
    ])


def fingerprint(run_dir: Path) -> dict:
    """Everything a study computes, minus timings."""
    from connectomes.connectome.codec import load_connectome

    fp = {"connectome": load_connectome(run_dir / "connectome.safetensors").ternary}  # content (meta names the folder)
    for p in sorted(run_dir.glob("develop/*/seed_*/steps/step_*/model.safetensors")):
        fp[str(p.relative_to(run_dir))] = {k: v for k, v in load_file(str(p)).items()}
    for p in sorted(run_dir.glob("develop/*/seed_*/metrics.jsonl")) + sorted(run_dir.glob("evolve/gen_*/metrics.jsonl")):
        fp[str(p.relative_to(run_dir))] = p.read_text()
    for p in sorted(run_dir.glob("eval/*/seed_*/step_*.json")):
        res = json.loads(p.read_text())
        fp[str(p.relative_to(run_dir))] = json.dumps(res.get("tasks", res), sort_keys=True, default=str)
    return fp


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if isinstance(a[k], dict):
            if a[k].keys() != b[k].keys() or not all(torch.equal(a[k][t], b[k][t]) for t in a[k]):
                return False
        elif a[k] != b[k]:
            return False
    return True


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    run_dir = run_study(tiny(tmp, "ref"), progress=False)
    return run_dir, fingerprint(run_dir)


def test_study_produces_connectome_arms_evals_and_report(reference_run):
    run_dir, fp = reference_run
    assert (run_dir / "connectome.safetensors").exists()
    assert len(list(run_dir.glob("eval/*/seed_*/step_*.json"))) == 3 * 2 * 3
    assert (run_dir / "report" / "report.md").exists() and (run_dir / "report" / "val_loss.png").exists()
    assert all(state == "done" or "/" in state and state.split("/")[0] == state.split("/")[1].split()[0]
               for _, state in status(run_dir) if not _.startswith("eval"))


def test_killed_in_evolve_then_rerun_is_identical(tmp_path, reference_run):
    cfg = tiny(tmp_path, "ref")
    run_study(cfg, progress=False, stop=("evolve", 1, 4))
    assert not (tmp_path / "ref" / "connectome.safetensors").exists()
    run_study(cfg, progress=False)
    assert same(fingerprint(tmp_path / "ref"), reference_run[1])


def test_killed_in_an_arm_then_rerun_is_identical(tmp_path, reference_run):
    cfg = tiny(tmp_path, "ref")
    run_study(cfg, progress=False, stop=("develop", Unit("random", 1), 6))
    assert not (tmp_path / "ref" / "develop/random/seed_1/done.json").exists()
    run_study(cfg, progress=False)
    assert same(fingerprint(tmp_path / "ref"), reference_run[1])


def test_seeds_differ_within_an_arm(reference_run):
    run_dir, _ = reference_run
    a = load_file(str(run_dir / "develop/connectome/seed_0/steps/step_000010/model.safetensors"))
    b = load_file(str(run_dir / "develop/connectome/seed_1/steps/step_000010/model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_one_validation_set_headline_equals_curve_and_generation_0(reference_run):
    """The val_loss headline of a final step is the last point of that arm's curve, bit for bit, and
    generation 0's upper bound, re-scored by the eval task on its own weights, is the same number: all
    three score the same windows of the val split."""
    from connectomes.evals.runner import evaluate_checkpoint
    from connectomes.pipeline.study import eval_context, open_run

    run_dir, _ = reference_run
    for arm in ("connectome", "random", "dense"):
        for seed in (0, 1):
            head = json.loads((run_dir / f"eval/{arm}/seed_{seed}/step_000010.json").read_text())["tasks"]["val_loss"]
            curve = [json.loads(x) for x in (run_dir / f"develop/{arm}/seed_{seed}/metrics.jsonl").read_text().splitlines()]
            last = [r for r in curve if r.get("val_loss") is not None][-1]
            assert last["step"] == 10 and head["loss"] == last["val_loss"] and head["tokens"] == 2048
    run = open_run(tiny(run_dir.parent, "ref"), progress=False, prepare=False)
    gen0 = json.loads((run_dir / "evolve/gen_00/generation.json").read_text())
    step = run.layout.generation(0).step(12)
    res = evaluate_checkpoint(step, ["val_loss"], eval_context(run, None))
    assert res["tasks"]["val_loss"]["loss"] == gen0["val_loss"]


def test_evolve_and_develop_must_share_the_validation_budget(tmp_path):
    from connectomes.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"evolve.train.eval_tokens \(4096\) and develop.train.eval_tokens \(2048\) must be equal"):
        tiny(tmp_path, "v", "evolve.train.eval_tokens=4096")


def test_step_0_gets_every_task_for_the_floor_rows(reference_run, tmp_path, monkeypatch):
    """Kept steps between 0 and the final one get the step tasks; step 0 and the final step get all."""
    from connectomes.pipeline import study
    from connectomes.pipeline.study import open_run, stage_eval

    run_dir, _ = reference_run
    (tmp_path / "hellaswag").mkdir()
    calls = []
    monkeypatch.setattr(study, "evaluate_steps", lambda paths, tasks, ctx, out: calls.append(([p.name for p in paths], tasks)))
    cfg = tiny(run_dir.parent, "ref", "eval.tasks=val_loss,hellaswag", "eval.step_tasks=val_loss", f"eval.data_root={tmp_path}")
    stage_eval(open_run(cfg, progress=False, prepare=False), "dense", 0)
    assert calls == [(["step_000005"], ["val_loss"]), (["step_000000", "step_000010"], ["val_loss", "hellaswag"])]


def test_per_task_limits_and_the_sample_seed_reach_the_evaluations(tmp_path):
    from connectomes.pipeline.study import eval_context, open_run

    plain = tiny(tmp_path, "l", "eval.limit=7")
    assert plain.eval.limit == {"blimp": 7, "blimp_supplement": 7, "hellaswag": 7, "lexical_decision": 7, "mmlu": 7,
                                "word_learning": 7, "zorro": 7}
    cfg = tiny(tmp_path, "l", "eval.limit.hellaswag=500", "eval.limit.mmlu=570", "eval.sample_seed=3")
    ctx = eval_context(open_run(cfg, progress=False), tmp_path)
    assert ctx.limit == {"blimp": 0, "blimp_supplement": 0, "hellaswag": 500, "lexical_decision": 0, "mmlu": 570,
                         "word_learning": 0, "zorro": 0} and ctx.sample_seed == 3
    assert ctx.limit_for("hellaswag") == 500 and ctx.limit_for("mmlu") == 570 and ctx.limit_for("fmri") == 0
    assert ctx.options == {"val_loss.tokens": 2048}


def test_rerun_with_changed_config_is_refused(tmp_path, capsys):
    cfg = tiny(tmp_path, "x")
    run_study(cfg, progress=False, stop=("evolve", 0, 4))
    args = ["study", "configs/demo.yaml", f"runs_dir={tmp_path}", "name=x"]
    assert main(args) == 2
    assert "different config" in capsys.readouterr().err


def test_status_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_train_and_eval_settings_do_not_invalidate_a_run(tmp_path):
    from connectomes.pipeline.study import open_run

    open_run(tiny(tmp_path, "t"), progress=False)
    run = open_run(tiny(tmp_path, "t", "train.lr=0.1", "eval.limit=5"), progress=False)
    assert run.cfg.train.lr == 0.1


@pytest.mark.parametrize("stage_device,ignored,backend", [("cpu", "cuda", "gloo"), ("cuda", "cpu", "nccl")])
def test_ddp_backend_follows_the_stages_device(tmp_path, monkeypatch, stage_device, ignored, backend):
    """Under torchrun the process group must suit the device the study's stages train on, not the
    plain `train` verb's train.device."""
    import torch.distributed as dist

    from connectomes.pipeline.study import open_run

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)  # no real group: barriers are skipped
    monkeypatch.setattr(dist, "init_process_group", lambda backend: chosen.append(backend))
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=b", "model.preset=demo", "data.source=synthetic",
                             "data.large_tokens=20000", "data.small_tokens=5000", "data.val_tokens=5000",
                             f"train.device={ignored}", f"evolve.train.device={stage_device}",
                             f"develop.train.device={stage_device}"])
    open_run(cfg, progress=False)
    assert chosen == [backend]


def test_stages_on_both_device_kinds_get_a_group_for_both():
    from connectomes.core.distributed import backend_for

    assert backend_for(["cpu", "cuda"]) == "cpu:gloo,cuda:nccl"
    assert backend_for(["cpu", "cpu"]) == "gloo" and backend_for(["cuda"]) == "nccl"
