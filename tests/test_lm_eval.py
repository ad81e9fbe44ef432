"""lm-evaluation-harness on an exported folder: a local HellaSwag task (YAML + jsonl of a few items of
our HellaSwag copy, built in tmp) scored by ``lm_eval.simple_evaluate`` with ``--model hf`` and
``trust_remote_code=True`` gives the same acc and acc_norm as ``connectomes eval`` (our acc and
acc_norm_char) on the same items, and the same per-choice log-likelihoods.

The task mirrors our preprocessing: query = ctx (no activity-label prefix), choices = endings, the
harness's default target delimiter " " = ours. The harness moves a context's trailing whitespace into
the continuation and encodes context + continuation jointly; with the byte tokenizer and contexts not
ending in whitespace that is exactly our separate encoding, so items are chosen that way."""

import json
import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="hf_modules_"))
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf_datasets_"))

import pytest  # noqa: E402

lm_eval = pytest.importorskip("lm_eval")

from connectomes.evals.context import EvalContext
from connectomes.evals.tasks.hellaswag import read_items
from connectomes.evals.runner import evaluate_checkpoint  # noqa: E402
from connectomes.io.export import export_hf
from connectomes.model.gpt import GPTConfig

from test_hf import _step  # noqa: E402

N_ITEMS = 12
TASK = """task: connectomes_hellaswag_local
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {path}
output_type: multiple_choice
validation_split: validation
doc_to_text: "{{{{ctx}}}}"
doc_to_target: "{{{{label}}}}"
doc_to_choice: endings
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def _local_task(tmp_path, data_root):
    items, _ = read_items(data_root / "hellaswag" / "hellaswag_val_full.txt.bz2")
    chosen = [it for it in items[:3 * N_ITEMS] if it.ctx == it.ctx.rstrip()][:N_ITEMS]
    assert len(chosen) == N_ITEMS
    jsonl = tmp_path / "items.jsonl"
    with open(jsonl, "w") as f:
        for it in chosen:
            f.write(json.dumps({"ctx": it.ctx, "endings": list(it.endings), "label": it.label,
                                "activity_label": it.activity_label}) + "\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "connectomes_hellaswag_local.yaml").write_text(TASK.format(path=jsonl))
    return jsonl, tasks


def test_harness_matches_connectomes_eval(tmp_path, data_root):
    from lm_eval.tasks import TaskManager

    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)  # some contexts get cut (the harness refuses an ending longer than the window)
    _, step = _step(tmp_path, cfg=cfg, seed=7)
    out = export_hf(step, tmp_path / "hf")
    jsonl, tasks = _local_task(tmp_path, data_root)

    ours = evaluate_checkpoint(step, ["hellaswag"], EvalContext(options={"hellaswag.path": str(jsonl)}))["tasks"]["hellaswag"]
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={out},trust_remote_code=True,dtype=float32",
        tasks=["connectomes_hellaswag_local"], task_manager=TaskManager(include_path=str(tasks)),
        batch_size=4, device="cpu", log_samples=True)
    theirs = res["results"]["connectomes_hellaswag_local"]
    assert ours["items"] == N_ITEMS and ours["truncated_items"] > 0
    assert theirs["acc,none"] == pytest.approx(ours["acc"]["value"], abs=1e-12)
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm_char"]["value"], abs=1e-12)

    # and item by item: the harness's log-likelihood of every ending equals ours
    from connectomes.io.load import load_model, load_tokenizer_for
    from connectomes.evals.tasks.hellaswag import score_items
    from connectomes.evals.scoring import ScoringLM

    model, info = load_model(step)
    items, _ = read_items(jsonl)
    scored = score_items(ScoringLM(model, load_tokenizer_for(info)), items)
    for sample in res["samples"]["connectomes_hellaswag_local"]:
        lls = [r[0][0] for r in sample["resps"]]
        assert lls == pytest.approx(scored[sample["doc_id"]]["logprob"], abs=1e-4)
