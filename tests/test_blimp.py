"""BLiMP and the BabyLM supplement on real pairs (a small copy of each file in tmp), checked against models
whose scores are known by hand and against a plain forward pass per sentence.

- The uniform model (every weight 0: logits 0, p = 1/256 for every byte) scores a sentence -len(bytes) ln 256,
  so a pair is right exactly when the good sentence has fewer bytes and ties exactly when both have as many.
- The unigram model (every position reads the same embedding; lm_head gives fixed logits l) scores a sentence
  as the sum of its bytes' log-probabilities under softmax(l), written out here in plain Python.
"""

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from connectomes.core.errors import DataError
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.context import EvalContext
from connectomes.evals.minimal_pairs import Pair, macro, outcome, run_pairs
from connectomes.evals.registry import get_task
from connectomes.evals.runner import evaluate
from connectomes.evals.sampling import allocate
from connectomes.evals.tasks import blimp, blimp_supplement
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training import checkpoint as ckpt

# (paradigm, first record, records): one per field, the paradigm that spells its field "syntax/semantics",
# the 3 identical pairs of passive_1 and principle_A_case_2 among them, and sentences over 64 bytes
SMALL_DATA = Path(__file__).parent / "fixtures" / "data"  # a few real files: tests that need little real data
SUBSET = (("passive_1", 318, 10), ("passive_1", 805, 8), ("principle_A_case_2", 100, 8),
          ("existential_there_object_raising", 0, 8), ("determiner_noun_agreement_1", 0, 8),
          ("superlative_quantifiers_1", 0, 6), ("matrix_question_npi_licensor_present", 0, 6))
IDENTICAL = {"passive_1:324", "passive_1:810", "principle_A_case_2:105"}
SUPPLEMENT_RECORDS = 7
LN256 = math.log(256)
CFG = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=64)  # some sentences need 2 windows


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory, data_root) -> Path:
    return make_eval_root(tmp_path_factory.mktemp("blimp_root"), data_root)


def make_eval_root(root: Path, data_root: Path) -> Path:
    """A data root with blimp/ (a few real records of 6 paradigms, and the real models_summary.jsonl) and
    blimp_supplement/ (the first records of each of its 5 files)."""
    (root / "blimp" / "data").mkdir(parents=True)
    chosen: dict[str, list[str]] = {}
    for name, first, n in SUBSET:
        lines = (data_root / "blimp" / "data" / f"{name}.jsonl").read_text().splitlines(keepends=True)
        chosen.setdefault(name, []).extend(lines[first:first + n])
    for name, lines in chosen.items():
        (root / "blimp" / "data" / f"{name}.jsonl").write_text("".join(lines))
    (root / "blimp" / "models_summary.jsonl").write_text((data_root / "blimp" / "models_summary.jsonl").read_text())
    (root / "blimp_supplement").mkdir()
    for p in sorted((data_root / "blimp_supplement").glob("*.jsonl")):
        lines = p.read_text().splitlines(keepends=True)[:SUPPLEMENT_RECORDS]
        (root / "blimp_supplement" / p.name).write_text("".join(lines))
    return root


def uniform_model(cfg: GPTConfig = CFG) -> GPT:
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def unigram_logits() -> list[float]:
    return [((v * 37) % 11) / 3.0 for v in range(256)]


def unigram_model(cfg: GPTConfig = CFG) -> GPT:
    """Blocks off (zero weights), every embedding the ones vector, lm_head rows l_v / n_embd: logits l_v times
    the RMS norm's factor 1/sqrt(1 + eps) at every position."""
    model = uniform_model(cfg)
    with torch.no_grad():
        model.transformer.wte.weight.fill_(1.0)
        model.lm_head.weight.copy_(torch.tensor(unigram_logits())[:, None].expand(-1, cfg.n_embd) / cfg.n_embd)
    return model


def unigram_logprob(text: str, eps: float = CFG.norm_eps) -> float:
    scale = 1 / math.sqrt(1 + eps)
    logits = [x * scale for x in unigram_logits()]
    log_z = math.log(sum(math.exp(x) for x in logits))
    return sum(logits[b] - log_z for b in text.encode("utf-8"))


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]


def blimp_records(root: Path) -> dict[str, dict]:
    return {f"{r['UID']}:{r['pairID']}": r for r in records(root / "blimp" / "data")}


def by_length(good: str, bad: str) -> float:
    g, b = len(good.encode()), len(bad.encode())
    return 1.0 if g < b else 0.5 if g == b else 0.0


def run_task(model, name: str, root: Path, limit: int = 0, seed: int = 0) -> dict:
    ctx = EvalContext(data_root=root, limit={name: limit}, sample_seed=seed, batch_size=5)
    return evaluate(model, load_tokenizer("bytes"), [name], ctx)["tasks"][name]


# ---------------------------------------------------------------------------------------------
# BLiMP


def test_uniform_model_outcomes_ties_and_accuracies_by_hand(eval_root):
    res = run_task(uniform_model(), "blimp", eval_root)
    recs = blimp_records(eval_root)
    assert res["items"] == len(recs) == sum(n for _, _, n in SUBSET)
    assert sorted(res["item_ids"]) == sorted(recs)
    want = {i: by_length(recs[i]["sentence_good"], recs[i]["sentence_bad"]) for i in recs}
    assert dict(zip(res["item_ids"], res["correct"]["acc"])) == want
    for i, m in zip(res["item_ids"], res["margin"]):
        n_good, n_bad = (len(recs[i][k].encode()) for k in ("sentence_good", "sentence_bad"))
        assert m == pytest.approx((n_bad - n_good) * LN256, abs=1e-4)
    assert IDENTICAL <= {i for i, x in want.items() if x == 0.5}
    assert res["ties"] == res["acc"]["ties"] == sum(x == 0.5 for x in want.values()) > len(IDENTICAL)
    assert res["windowed_sentences"] > 0  # existential_there_object_raising runs past the 64-token window

    per = {}
    for i, x in want.items():
        per.setdefault(recs[i]["UID"], []).append(x)
    assert set(res["paradigms"]) == set(per)
    for uid, xs in per.items():
        got = res["paradigms"][uid]
        assert got["value"] == pytest.approx(sum(xs) / len(xs)) and got["n"] == len(xs)
        assert got["ties"] == xs.count(0.5)
    assert res["acc"]["value"] == pytest.approx(sum(sum(x) / len(x) for x in per.values()) / len(per))
    assert res["acc"]["paradigms"] == len(per) and res["acc"]["n"] == len(recs)
    assert res["acc_pooled"]["value"] == pytest.approx(sum(want.values()) / len(want))


def test_fields_and_phenomena_are_macro_means_over_their_paradigms(eval_root):
    res = run_task(uniform_model(), "blimp", eval_root)
    assert set(res["fields"]) == {"morphology", "semantics", "syntax", "syntax_semantics"}  # syntax/semantics read as one
    assert res["paradigms"]["principle_A_case_2"]["field"] == "syntax_semantics"
    sem = ["matrix_question_npi_licensor_present", "superlative_quantifiers_1"]
    assert res["fields"]["semantics"]["paradigms"] == 2
    assert res["fields"]["semantics"]["value"] == pytest.approx(sum(res["paradigms"][u]["value"] for u in sem) / 2)
    assert res["fields"]["syntax_semantics"]["paradigms"] == 2
    assert res["phenomena"]["binding"]["value"] == res["paradigms"]["principle_A_case_2"]["value"]
    assert sum(f["n"] for f in res["fields"].values()) == res["items"]


def test_unigram_model_margins_by_hand(eval_root):
    res = run_task(unigram_model(), "blimp", eval_root)
    recs = blimp_records(eval_root)
    checked = 0
    for i, m, x in zip(res["item_ids"], res["margin"], res["correct"]["acc"]):
        good, bad = recs[i]["sentence_good"], recs[i]["sentence_bad"]
        want = unigram_logprob(good) - unigram_logprob(bad)
        assert m == pytest.approx(want, abs=1e-4)
        if Counter(good.encode()) == Counter(bad.encode()):  # the same bytes in another order: a unigram tie
            assert x == 0.5 if good == bad else abs(m) < 1e-4
        else:
            assert abs(want) > 1e-3 and x == outcome(want, 0.0)
            checked += 1
    assert checked > 40


def test_identical_sentences_tie_exactly_under_any_model(eval_root):
    torch.manual_seed(3)
    res = run_task(GPT(CFG), "blimp", eval_root)
    got = dict(zip(res["item_ids"], res["correct"]["acc"]))
    margins = dict(zip(res["item_ids"], res["margin"]))
    assert all(got[i] == 0.5 and margins[i] == 0.0 for i in IDENTICAL)
    assert res["ties"] == len(IDENTICAL)  # a random model ties nothing else


def test_random_model_agrees_with_a_plain_forward_per_sentence(eval_root):
    """No batching, padding, windows or deduplication: one forward of [eot] + sentence per sentence."""
    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=192)
    torch.manual_seed(5)
    model = GPT(cfg).eval()
    res = run_task(model, "blimp", eval_root)
    recs = blimp_records(eval_root)

    def logprob(text: str) -> float:
        ids = [0] + list(text.encode())
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), dim=-1)
        return sum(lp[t, ids[t + 1]].item() for t in range(len(ids) - 1))

    for i, m, x in zip(res["item_ids"], res["margin"], res["correct"]["acc"]):
        want = logprob(recs[i]["sentence_good"]) - logprob(recs[i]["sentence_bad"])
        assert m == pytest.approx(want, abs=1e-4)
        assert x == (0.5 if i in IDENTICAL else outcome(want, 0.0))
        assert i in IDENTICAL or abs(want) > 1e-3  # the agreement is not decided by rounding


def test_sample_is_seeded_stratified_and_keeps_every_paradigm(eval_root):
    """Proportional allocation by paradigm (BLiMP's 67 x 1,000 pairs: the same number for each)."""
    model = uniform_model()
    sizes = Counter(i.split(":")[0] for i in blimp_records(eval_root))
    paradigms = sorted(sizes)
    a = run_task(model, "blimp", eval_root, limit=12, seed=1)
    assert Counter(i.split(":")[0] for i in a["item_ids"]) == dict(zip(paradigms, allocate([sizes[p] for p in paradigms], 12)))
    assert a["selection"]["n"] == 12 and a["selection"]["of"] == sum(sizes.values()) and a["selection"]["seed"] == 1
    assert "stratified" in a["selection"]["selection"] and a["acc"]["paradigms"] == len(paradigms)
    assert allocate([1000] * 67, 670) == [10] * 67
    assert run_task(model, "blimp", eval_root, limit=12, seed=1)["item_ids"] == a["item_ids"]
    assert run_task(model, "blimp", eval_root, limit=12, seed=2)["item_ids"] != a["item_ids"]
    few = run_task(model, "blimp", eval_root, limit=len(paradigms), seed=0)
    assert {i.split(":")[0] for i in few["item_ids"]} == set(paradigms)


def test_references_are_read_from_models_summary():
    refs = blimp.references(SMALL_DATA / "blimp")  # the real models_summary.jsonl (tests/fixtures/data/README.md)
    assert refs["5-gram"]["overall"] == pytest.approx(0.612, abs=5e-4)
    assert refs["LSTM"]["overall"] == pytest.approx(0.698, abs=5e-4)
    assert refs["GPT-2 large"]["overall"] == pytest.approx(0.830, abs=5e-4)
    assert refs["human (paper)"] == {"overall": 0.886}
    for ref in ("5-gram", "LSTM", "GPT-2 large"):  # the published overall is the mean over the 67 paradigms
        per = refs[ref]["paradigms"]
        assert len(per) == 67 and sum(per.values()) / 67 == pytest.approx(refs[ref]["overall"], abs=1e-6)
    assert set(refs["GPT-2 large"]["fields"]) == {"morphology", "semantics", "syntax", "syntax_semantics"}
    assert len(refs["GPT-2 large"]["phenomena"]) == 12


def test_the_pairs_labels_are_the_references_fields_and_phenomena(data_root):
    refs = blimp.references(data_root / "blimp")
    # the pairs' own labels: 67 paradigms in the 4 fields and the paper's 12 phenomena (s-selection is argument
    # structure there, as in models_summary.jsonl)
    pairs, _, hashes = blimp.load_pairs(data_root / "blimp")
    assert len(pairs) == 67000 and len(hashes) == 67
    phenomenon = {p.group: dict(p.info)["phenomenon"] for p in pairs}
    field = {p.group: dict(p.info)["field"] for p in pairs}
    assert set(phenomenon.values()) == set(refs["GPT-2 large"]["phenomena"])
    assert phenomenon["animate_subject_passive"] == phenomenon["causative"] == "argument_structure"
    assert Counter(field.values()) == {"syntax": 26, "morphology": 18, "syntax_semantics": 14, "semantics": 9}
    assert blimp.references(data_root / "hellaswag") == {}  # no models_summary.jsonl: no references


def test_malformed_records_are_refused_or_skipped(tmp_path, eval_root):
    folder = tmp_path / "blimp"
    folder.mkdir()
    good = (eval_root / "blimp" / "data" / "passive_1.jsonl").read_text().splitlines()[:3]
    rec = json.loads(good[1])
    del rec["field"]
    (folder / "passive_1.jsonl").write_text("\n".join([good[0], json.dumps(rec), good[2]]) + "\n")
    with pytest.raises(DataError, match=r"passive_1.jsonl: record 2 is a malformed BLiMP pair \(missing field field\)"):
        blimp.load_pairs(folder)
    pairs, skipped, _ = blimp.load_pairs(folder, skip_malformed=True)
    assert len(pairs) == 2 and len(skipped) == 1 and "record 2: missing field field" in skipped[0]
    (folder / "passive_1.jsonl").write_text("\n".join([good[0], good[0]]) + "\n")
    with pytest.raises(DataError, match="two pairs share the id 'passive_1:318'"):
        blimp.load_pairs(folder)
    (folder / "passive_1.jsonl").write_text(good[0] + "\n" + good[1][:40])
    with pytest.raises(DataError, match="ends in a cut line"):
        blimp.load_pairs(folder)


# ---------------------------------------------------------------------------------------------
# the supplement


def test_supplement_mean_over_files_and_pooled_by_hand(eval_root):
    res = run_task(uniform_model(), "blimp_supplement", eval_root)
    per = {}
    for p in sorted((eval_root / "blimp_supplement").glob("*.jsonl")):
        per[p.stem] = [by_length(r["sentence_good"], r["sentence_bad"]) for r in records_of(p)]
    assert set(res["files"]) == set(per) and len(per) == 5
    assert res["item_ids"][:2] == ["hypernym:0", "hypernym:1"]
    assert res["correct"]["acc_pooled"] == [x for f in sorted(per) for x in per[f]]
    for f, xs in per.items():
        assert res["files"][f]["value"] == pytest.approx(sum(xs) / len(xs)) and res["files"][f]["ties"] == xs.count(0.5)
    assert res["acc"]["value"] == pytest.approx(sum(sum(xs) / len(xs) for xs in per.values()) / 5)
    everything = [x for xs in per.values() for x in xs]
    assert res["acc_pooled"]["value"] == pytest.approx(sum(everything) / len(everything))
    assert res["ties"] == everything.count(0.5) and res["acc"]["files"] == 5
    dialogue = records_of(eval_root / "blimp_supplement" / "turn_taking.jsonl")[0]["sentence_good"]
    assert "\n" in dialogue  # scored as one text, the line break a byte like any other


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mean_and_pooled_differ_when_files_differ_in_size():
    groups = {"big": {"value": 1.0, "stderr": 0.0, "n": 9, "ties": 0}, "small": {"value": 0.0, "stderr": 0.0, "n": 1, "ties": 0}}
    assert macro(groups)["value"] == 0.5 and macro(groups)["n"] == 10
    lm = type("LM", (), {})()  # scores by length: the shorter sentence wins
    lm.tokenizer, lm.max_length = load_tokenizer("bytes"), 64
    lm.loglikelihood_rolling = lambda seqs, desc=None: [(-float(len(s)), len(s)) for s in seqs]
    pairs = [Pair(f"big:{k}", "big", "a", "bb") for k in range(9)] + [Pair("small:0", "small", "ccc", "d")]
    res = run_pairs(lm, pairs)
    assert res["macro"]["value"] == 0.5 and res["pooled"]["value"] == 0.9
    assert res["outcomes"] == [1] * 9 + [0]


# ---------------------------------------------------------------------------------------------
# the CLI


def save_step(tmp_path: Path, model: GPT) -> Path:
    folder = tmp_path / "run" / "develop" / "dense" / "seed_0" / "steps" / "step_000010"
    ckpt.save_step(folder, model, {"step": 10, "model_config": model.config.to_dict(), "tokenizer": "bytes"})
    return folder


def test_cli_eval_writes_accuracies_ties_ids_and_outcomes(tmp_path, eval_root):
    """The acceptance: ``connectomes eval STEP --tasks blimp,blimp_supplement --limit 0`` on the uniform model,
    every pair's outcome equal to the byte-length rule."""
    step = save_step(tmp_path, uniform_model())
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(step), "--tasks", "blimp,blimp_supplement",
                           "--limit", "0", "--data-root", str(eval_root), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    b, s = res["tasks"]["blimp"], res["tasks"]["blimp_supplement"]
    recs = blimp_records(eval_root)
    assert dict(zip(b["item_ids"], b["correct"]["acc"])) == {i: by_length(r["sentence_good"], r["sentence_bad"])
                                                             for i, r in recs.items()}
    assert set(b["paradigms"]) == {n for n, _, _ in SUBSET} and b["ties"] >= len(IDENTICAL)
    assert b["selection"] == {"selection": "all", "n": len(recs), "of": len(recs), "unit": "pairs"}
    supplement = [r for p in sorted((eval_root / "blimp_supplement").glob("*.jsonl")) for r in records_of(p)]
    assert s["correct"]["acc_pooled"] == [by_length(r["sentence_good"], r["sentence_bad"]) for r in supplement]
    assert len(s["files"]) == 5 and all({"value", "n", "ties"} <= set(f) for f in s["files"].values())
    assert len(s["item_ids"]) == len(supplement) and s["ties"] == sum(f["ties"] for f in s["files"].values())
    assert set(b["data_sha256"]) == {f"{n}.jsonl" for n, _, _ in SUBSET}


def test_specs_declare_chance_samples_and_breakdowns():
    b, s = get_task("blimp"), get_task("blimp_supplement")
    assert [m.chance for m in b.metrics + s.metrics] == [0.5, 0.5, 0.5]
    assert "frontier" in b.metrics[0].figures and b.sampled and s.sampled
    assert [(x.key, x.view) for x in b.breakdowns] == [("fields", "table"), ("phenomena", "table"), ("paradigms", "figure")]
    assert [x.key for x in s.breakdowns] == ["files"] and blimp_supplement.SPEC is s
