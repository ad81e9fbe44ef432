"""lm-evaluation-harness on an exported folder, through the task files the repository ships (tasks/*.yaml,
reading a data folder with tasks/connectomes_data.py): the local HellaSwag task on a data folder of a few
items of our HellaSwag copy, scored by ``lm_eval.simple_evaluate`` with ``--model hf`` and
``trust_remote_code=True`` gives the same acc and acc_norm as ``connectomes eval`` (our acc and
acc_norm_char) on the same items, and the same per-choice log-likelihoods.

The task mirrors our preprocessing: query = ctx (no activity-label prefix), choices = endings, the
harness's default target delimiter " " = ours. The harness moves a context's trailing whitespace into
the continuation and encodes context + continuation jointly; with the byte tokenizer and contexts not
ending in whitespace that is exactly our separate encoding, so items are chosen that way.

The local BLiMP task gives the same outcome as ``connectomes eval --tasks blimp`` on the same exported folder for
every pair without a tie, and so do the local Zorro and lexical-decision tasks (lexical decision's choices " word "
and " pseudo-word "); the local MMLU task's acc and acc_norm equal our cloze acc and acc_norm_char."""

import json
import os
import tempfile
from pathlib import Path

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
TASKS = Path(__file__).resolve().parents[1] / "tasks"  # the task files the repository ships (docs/interop.md)


def _manager(root):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS), metadata={"data_root": str(root)})


def _local_task(tmp_path, data_root):
    """A data folder whose hellaswag/ holds N_ITEMS real items (contexts not ending in whitespace, see above)."""
    items, _ = read_items(data_root / "hellaswag" / "hellaswag_val_full.txt.bz2")
    chosen = [it for it in items[:3 * N_ITEMS] if it.ctx == it.ctx.rstrip()][:N_ITEMS]
    assert len(chosen) == N_ITEMS
    root = tmp_path / "data"
    (root / "hellaswag").mkdir(parents=True)
    jsonl = root / "hellaswag" / "hellaswag_val.jsonl"
    with open(jsonl, "w") as f:
        for it in chosen:
            f.write(json.dumps({"ctx": it.ctx, "endings": list(it.endings), "label": it.label,
                                "activity_label": it.activity_label}) + "\n")
    return jsonl, root


def test_harness_matches_connectomes_eval(tmp_path, data_root):
    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)  # some contexts get cut (the harness refuses an ending longer than the window)
    _, step = _step(tmp_path, cfg=cfg, seed=7)
    out = export_hf(step, tmp_path / "hf")
    jsonl, root = _local_task(tmp_path, data_root)

    ours = evaluate_checkpoint(step, ["hellaswag"], EvalContext(options={"hellaswag.path": str(jsonl)}))["tasks"]["hellaswag"]
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={out},trust_remote_code=True,dtype=float32",
        tasks=["connectomes_hellaswag_local"], task_manager=_manager(root),
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


def test_harness_blimp_gives_our_per_pair_outcomes(tmp_path, data_root):
    """lm_eval's blimp_* template with ``target_delimiter: ""`` (the stock template keeps the default " ", so it
    scores " " + sentence), on real pairs: the same outcome as ``connectomes eval --tasks blimp`` on the same
    exported folder for every pair without a tie; on the identical pairs the harness takes the first choice
    (the good sentence) where we count half."""
    import subprocess
    import sys

    from test_blimp import IDENTICAL, blimp_records, make_eval_root

    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)  # the harness cuts, never windows
    _, step = _step(tmp_path, cfg=cfg, seed=11)
    hf = export_hf(step, tmp_path / "hf")
    eval_root = make_eval_root(tmp_path / "data", data_root)
    recs = blimp_records(eval_root)

    out = tmp_path / "ours.json"
    proc = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(hf), "--tasks", "blimp", "--data-root",
                           str(eval_root), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(out.read_text())["tasks"]["blimp"]
    outcome = dict(zip(ours["item_ids"], ours["correct"]["acc"]))
    margin = dict(zip(ours["item_ids"], ours["margin"]))

    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32",
        tasks=["connectomes_blimp_local"], task_manager=_manager(eval_root),
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


@pytest.mark.slow  # ~30 s: an export, our CLI and the harness on two tasks
def test_harness_zorro_and_lexical_decision_give_our_per_pair_outcomes(tmp_path, data_root, synthetic_data):
    """The shipped Zorro and lexical-decision tasks (" word " against " pseudo-word ") on a data folder of a few real
    BLiMP and Zorro records: on the same exported folder the harness's log-likelihood difference equals our margin
    and its outcome ours, pair by pair (a random model: no ties)."""
    import subprocess
    import sys

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
    names = {"connectomes_zorro_local": ("zorro", "id"), "connectomes_lexical_decision_local": ("lexical_decision", "word")}
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={hf},trust_remote_code=True,dtype=float32", tasks=sorted(names),
        task_manager=_manager(root), batch_size=8, device="cpu", log_samples=True)
    for name, (task, key) in names.items():
        outcome = dict(zip(ours[task]["item_ids"], ours[task]["correct"]["acc"]))
        margin = dict(zip(ours[task]["item_ids"], ours[task]["margin"]))
        samples = [s for s in res["samples"][name] if s["doc"][key] in outcome]  # ours: 40 lexical items by band
        assert len(samples) == len(outcome) >= 20
        for s in samples:
            good, bad = (r[0][0] for r in s["resps"])
            i = s["doc"][key]
            assert good - bad == pytest.approx(margin[i], abs=1e-4)
            assert abs(margin[i]) > 1e-3 and s["acc"] == outcome[i]
    lexical = {s["doc"]["word"]: s["doc"]["pseudoword"] for s in res["samples"]["connectomes_lexical_decision_local"]}
    assert [lexical[w] for w in ours["lexical_decision"]["item_ids"]] == ours["lexical_decision"]["pseudowords"]


def test_harness_mmlu_cloze_matches_connectomes_eval(tmp_path, data_root):
    """The shipped MMLU task on a data folder of the first questions of three real subjects: its acc and
    acc_norm are our cloze acc and acc_norm_char on the same questions."""
    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=512)
    _, step = _step(tmp_path, cfg=cfg, seed=5)
    out = export_hf(step, tmp_path / "hf")
    root = tmp_path / "data"
    (root / "mmlu" / "test").mkdir(parents=True)
    for subject in ("abstract_algebra", "astronomy", "marketing"):
        lines = (data_root / "mmlu" / "test" / f"{subject}_test.csv").read_text(encoding="utf-8").splitlines(keepends=True)
        (root / "mmlu" / "test" / f"{subject}_test.csv").write_text("".join(lines[:5]), encoding="utf-8")
    ours = evaluate_checkpoint(step, ["mmlu"], EvalContext(data_root=root, options={"mmlu.forms": "cloze"}))
    cloze = ours["tasks"]["mmlu"]["cloze"]
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={out},trust_remote_code=True,dtype=float32",
        tasks=["connectomes_mmlu_local"], task_manager=_manager(root), batch_size=4, device="cpu")
    theirs = res["results"]["connectomes_mmlu_local"]
    assert ours["tasks"]["mmlu"]["items"] == 12
    assert theirs["acc,none"] == pytest.approx(cloze["acc"]["value"], abs=1e-12)
    assert theirs["acc_norm,none"] == pytest.approx(cloze["acc_norm_char"]["value"], abs=1e-12)
