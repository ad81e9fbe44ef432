"""lm-evaluation-harness on an exported folder: a local HellaSwag task (YAML + jsonl of a few items of
our HellaSwag copy, built in tmp) scored by ``lm_eval.simple_evaluate`` with ``--model hf`` and
``trust_remote_code=True`` gives the same acc and acc_norm as ``connectomes eval`` (our acc and
acc_norm_char) on the same items, and the same per-choice log-likelihoods.

The task mirrors our preprocessing: query = ctx (no activity-label prefix), choices = endings, the
harness's default target delimiter " " = ours. The harness moves a context's trailing whitespace into
the continuation and encodes context + continuation jointly; with the byte tokenizer and contexts not
ending in whitespace that is exactly our separate encoding, so items are chosen that way.

A local BLiMP task built as the harness's blimp_* template gives the same outcome as ``connectomes eval --tasks
blimp`` on the same exported folder for every pair without a tie; so do local Zorro and lexical-decision tasks
built the same way (lexical decision's choices " word " and " pseudo-word ")."""

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


BLIMP_TASK = """task: connectomes_blimp_local
dataset_path: json
dataset_kwargs:
  data_files:
    train: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{{{[sentence_good, sentence_bad]}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_harness_blimp_gives_our_per_pair_outcomes(tmp_path, data_root):
    """lm_eval's blimp_* template with ``target_delimiter: ""`` (the stock template keeps the default " ", so it
    scores " " + sentence), on real pairs: the same outcome as ``connectomes eval --tasks blimp`` on the same
    exported folder for every pair without a tie; on the identical pairs the harness takes the first choice
    (the good sentence) where we count half."""
    import subprocess
    import sys

    from lm_eval.tasks import TaskManager
    from test_blimp import IDENTICAL, blimp_records, make_eval_root

    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)  # the harness cuts, never windows
    _, step = _step(tmp_path, cfg=cfg, seed=11)
    hf = export_hf(step, tmp_path / "hf")
    eval_root = make_eval_root(tmp_path / "data", data_root)
    recs = blimp_records(eval_root)
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs.values()))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "connectomes_blimp_local.yaml").write_text(BLIMP_TASK.format(path=jsonl))

    out = tmp_path / "ours.json"
    proc = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(hf), "--tasks", "blimp", "--data-root",
                           str(eval_root), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(out.read_text())["tasks"]["blimp"]
    outcome = dict(zip(ours["item_ids"], ours["correct"]["acc"]))
    margin = dict(zip(ours["item_ids"], ours["margin"]))

    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32",
        tasks=["connectomes_blimp_local"], task_manager=TaskManager(include_path=str(tasks)),
        batch_size=8, device="cpu", log_samples=True)
    samples = res["samples"]["connectomes_blimp_local"]
    assert len(samples) == len(recs) == len(outcome)
    for s in samples:
        i = f"{s['doc']['UID']}:{s['doc']['pairID']}"
        good, bad = (r[0][0] for r in s["resps"])
        assert good - bad == pytest.approx(margin[i], abs=1e-4)
        if i in IDENTICAL:
            assert outcome[i] == 0.5 and s["acc"] == 1.0
        else:
            assert abs(margin[i]) > 1e-3 and s["acc"] == outcome[i]


PAIR_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{{{[good, bad]}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow  # ~25 s: an export, our CLI and the harness on two tasks
def test_harness_zorro_and_lexical_decision_give_our_per_pair_outcomes(tmp_path, data_root, synthetic_data):
    """Zorro's pairs and lexical decision's (" word " against " pseudo-word ") as local loglikelihood tasks of the
    blimp_* kind: on the same exported folder, the harness's log-likelihood difference equals our margin and its
    outcome ours, pair by pair (no ties: a random model)."""
    import subprocess
    import sys

    from lm_eval.tasks import TaskManager
    from test_blimp import make_eval_root
    from test_zorro import make_zorro_root

    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)
    _, step = _step(tmp_path, cfg=cfg, seed=13)
    hf = export_hf(step, tmp_path / "hf")
    root = make_zorro_root(make_eval_root(tmp_path / "data", data_root), data_root)
    (root / "corpus").mkdir()
    (root / "corpus" / "a.txt").write_text("text\n")
    out = tmp_path / "ours.json"
    proc = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(hf), "--tasks", "zorro,lexical_decision",
                           "--limit", "lexical_decision=40", "--data-root", str(root), "--prepared", str(synthetic_data.dir),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(out.read_text())["tasks"]
    from test_zorro import hand_pairs

    zorro = hand_pairs(root)
    docs = {"connectomes_zorro_local": [{"id": i, "good": zorro[i][0], "bad": zorro[i][1]} for i in ours["zorro"]["item_ids"]],
            "connectomes_lexdec_local": [{"id": w, "good": f" {w} ", "bad": f" {p} "} for w, p in
                                         zip(ours["lexical_decision"]["item_ids"], ours["lexical_decision"]["pseudowords"])]}
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, rows in docs.items():
        jsonl = tmp_path / f"{name}.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tasks / f"{name}.yaml").write_text(PAIR_TASK.format(name=name, path=jsonl))
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32", tasks=sorted(docs),
        task_manager=TaskManager(include_path=str(tasks)), batch_size=8, device="cpu", log_samples=True)
    for name, task in (("connectomes_zorro_local", "zorro"), ("connectomes_lexdec_local", "lexical_decision")):
        outcome = dict(zip(ours[task]["item_ids"], ours[task]["correct"]["acc"]))
        margin = dict(zip(ours[task]["item_ids"], ours[task]["margin"]))
        samples = res["samples"][name]
        assert len(samples) == len(outcome) == len(docs[name]) >= 20
        for s in samples:
            good, bad = (r[0][0] for r in s["resps"])
            i = s["doc"]["id"]
            assert good - bad == pytest.approx(margin[i], abs=1e-4)
            assert abs(margin[i]) > 1e-3 and s["acc"] == outcome[i]
