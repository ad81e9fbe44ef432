"""The runner: tasks through the registry, checkpoint provenance, atomic JSON, resumable step lists."""

import hashlib
import json

import pytest
import torch

from connectomes.training.checkpoint import WEIGHTS, save_step
from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.registry import tasks
from connectomes.evals.tasks import hellaswag
from connectomes.evals import runner
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=64)
ROWS = [{"ctx": "The sun", "endings": ["rises.", "sets.", "is a star.", "x"], "label": 0, "activity_label": "Sky"},
        {"ctx": "Water is", "endings": ["wet.", "dry.", "blue", "cold"], "label": 0, "activity_label": "Facts"}]


def tiny(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "hellaswag").mkdir(parents=True)
    (root / "hellaswag" / "hellaswag_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for split in ("test", "dev"):
        (root / "mmlu" / split).mkdir(parents=True)
        (root / "mmlu" / split / f"virology_{split}.csv").write_text(
            "".join(f'"Q{k}?",a,bb,ccc,dddd,{k % 4}\n' for k in range(5)))
    return root


def step(tmp_path, name="step_000010", seed=0):
    return save_step(tmp_path / "run" / name, tiny(seed), {"step": int(name[-6:]), "model_config": CFG.to_dict(),
                                                            "tokenizer": "bytes", "config": {"lr": 0.1}})


def test_unknown_task_names_the_valid_ones(data):
    with pytest.raises(UserError, match=r"unknown evaluation task 'squad'; valid tasks: " + ", ".join(tasks())):
        runner.evaluate(tiny(), load_tokenizer("bytes"), ["hellaswag", "squad"], EvalContext(data_root=data))


def test_evaluate_runs_each_task_with_timing(data):
    model, tok = tiny(), load_tokenizer("bytes")
    ctx = EvalContext(data_root=data, batch_size=3, options={"mmlu.forms": "cloze"})
    res = runner.evaluate(model, tok, ["hellaswag", "mmlu"], ctx)
    assert list(res["tasks"]) == list(res["timing_s"]) == ["hellaswag", "mmlu"]
    assert all(t >= 0 for t in res["timing_s"].values()) and res["tokenizer"] == "bytes" and res["max_length"] == 64
    direct = hellaswag.run(ScoringLM(model, tok), EvalContext(data_root=data))
    assert res["tasks"]["hellaswag"]["acc"] == direct["acc"] and res["tasks"]["mmlu"]["cloze"]["acc"]["n"] == 5


def test_evaluate_checkpoint_records_provenance_and_writes_json(data, tmp_path):
    folder = step(tmp_path)
    out = tmp_path / "out" / "res.json"
    res = runner.evaluate_checkpoint(folder, ["hellaswag"], EvalContext(data_root=data, limit=1), out=out)
    assert res["model_sha256"] == hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    assert res["config_sha256"] == hashlib.sha256(json.dumps({"lr": 0.1}, sort_keys=True).encode()).hexdigest()
    assert res["step"] == 10 and res["limit"] == 1 and res["tasks"]["hellaswag"]["items"] == 1
    assert res["versions"]["torch"] == torch.__version__ and res["wall_s"] >= 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert [p.name for p in out.parent.iterdir()] == ["res.json"]  # no temporary file left behind


def test_evaluate_steps_resumes_and_fills_in_missing_tasks(data, tmp_path, monkeypatch):
    steps = [step(tmp_path, "step_000010", 0), step(tmp_path, "step_000020", 1)]
    out_dir = tmp_path / "eval"
    ctx = EvalContext(data_root=data, options={"mmlu.forms": ["cloze"]})
    calls = []
    real = runner.evaluate_checkpoint
    monkeypatch.setattr(runner, "evaluate_checkpoint", lambda p, t, c, **kw: calls.append((p.name, t)) or real(p, t, c, **kw))

    first = runner.evaluate_steps(steps, ["hellaswag"], ctx, out_dir)
    assert sorted(first) == ["step_000010", "step_000020"] and len(calls) == 2
    assert sorted(p.name for p in out_dir.glob("*.json")) == ["step_000010.json", "step_000020.json"]

    calls.clear()
    again = runner.evaluate_steps(steps, ["hellaswag"], ctx, out_dir)
    assert calls == [] and again == json.loads(json.dumps(first))

    more = runner.evaluate_steps(steps, ["hellaswag", "mmlu"], ctx, out_dir)  # only mmlu is run
    assert calls == [("step_000010", ["mmlu"]), ("step_000020", ["mmlu"])]
    saved = json.loads((out_dir / "step_000010.json").read_text())
    assert set(saved["tasks"]) == set(saved["timing_s"]) == {"hellaswag", "mmlu"}
    assert saved["tasks"]["hellaswag"] == first["step_000010"]["tasks"]["hellaswag"] == more["step_000010"]["tasks"]["hellaswag"]

    calls.clear()
    runner.evaluate_steps(steps, ["hellaswag"], EvalContext(data_root=data, options={"mmlu.forms": "cloze"}), out_dir)
    assert [c[0] for c in calls] == ["step_000010", "step_000020"]  # other options: evaluated again

    calls.clear()
    step(tmp_path, "step_000010", 5)  # retrained weights under the same name
    (out_dir / "step_000020.json").write_text("{truncated")  # a damaged result
    runner.evaluate_steps(steps, ["hellaswag"], EvalContext(data_root=data, options={"mmlu.forms": "cloze"}), out_dir)
    assert sorted(c[0] for c in calls) == ["step_000010", "step_000020"]
    assert json.loads((out_dir / "step_000020.json").read_text())["tasks"]["hellaswag"]["items"] == 2


def test_a_changed_limit_or_sample_seed_evaluates_again(data, tmp_path, monkeypatch):
    steps = [step(tmp_path, "step_000010", 0)]
    out_dir = tmp_path / "eval"
    calls = []
    real = runner.evaluate_checkpoint
    monkeypatch.setattr(runner, "evaluate_checkpoint", lambda p, t, c, **kw: calls.append((c.limit, c.sample_seed)) or real(p, t, c, **kw))
    for limit, seed in [({"hellaswag": 1, "mmlu": 1}, 0), ({"hellaswag": 1, "mmlu": 1}, 0),
                        ({"hellaswag": 1, "mmlu": 2}, 0), ({"hellaswag": 1, "mmlu": 2}, 3), ({"hellaswag": 2, "mmlu": 2}, 3)]:
        runner.evaluate_steps(steps, ["hellaswag"], EvalContext(data_root=data, limit=limit, sample_seed=seed), out_dir)
    # the repeat is served from the JSON, and so is another limit for a task the file does not hold (MMLU);
    # another seed or another HellaSwag limit re-evaluates
    assert calls == [({"hellaswag": 1, "mmlu": 1}, 0), ({"hellaswag": 1, "mmlu": 2}, 3), ({"hellaswag": 2, "mmlu": 2}, 3)]
    saved = json.loads((out_dir / "step_000010.json").read_text())
    assert saved["limit"] == {"hellaswag": 2, "mmlu": 2} and saved["sample_seed"] == 3
    assert saved["tasks"]["hellaswag"]["items"] == 2  # both rows: the whole set, so no seed

    calls.clear()  # a limit for a newly added task: only that task is scored, the others stay current
    runner.evaluate_steps(steps, ["hellaswag", "mmlu"], EvalContext(data_root=data, limit={"hellaswag": 2, "mmlu": 3},
                                                                    sample_seed=3), out_dir)
    assert calls == [({"hellaswag": 2, "mmlu": 3}, 3)]
    saved = json.loads((out_dir / "step_000010.json").read_text())
    assert saved["tasks"]["hellaswag"]["items"] == 2 and saved["tasks"]["mmlu"]["items"] == 3
