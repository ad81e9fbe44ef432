"""Word learning: the per-word surprisal task on a prepared synthetic corpus (words of a tmp Zorro file that the
corpus uses), checked by hand under the uniform and unigram models and against unbatched per-token scoring; the
learning-curve fit (ages recovered from known sigmoids, each status rule) and its report section on a hand-made
run folder."""

import json
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from connectomes.analysis import learning_curves as lc
from connectomes.analysis import report, results
from connectomes.data.shards import read_shard
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.context import EvalContext
from connectomes.evals.registry import get_task
from connectomes.evals.runner import evaluate
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

from test_blimp import uniform_model, unigram_logprob, unigram_model
from test_report_stats import eval_run, write_eval

TOKENS = 12_000
WORDS = ["barn", "farmer", "feeds", "field", "horse", "lamb", "orchard", "green", "every", "towards"]


@pytest.fixture(scope="module")
def wl_root(tmp_path_factory):
    """A data folder whose zorro/ file holds the words (two sentences, bad then good); no blimp/."""
    root = tmp_path_factory.mktemp("wl_root")
    (root / "zorro").mkdir()
    (root / "zorro" / "x-y.txt").write_text(" ".join(WORDS[:5]) + " .\n" + " ".join(WORDS[5:]) + " .\n")
    return root


def run_wl(model, root, prepared, limit=0, **options):
    ctx = EvalContext(data_root=root, prepared_dir=prepared, limit={"word_learning": limit}, batch_size=4,
                      options={"word_learning.tokens": TOKENS, **options})
    return evaluate(model, load_tokenizer("bytes"), ["word_learning"], ctx)["tasks"]["word_learning"]


def val_text(prepared) -> str:
    ids = np.concatenate([read_shard(p) for p in prepared.split_paths("val")])[:TOKENS]
    return "".join(chr(b) if b < 128 else "\ufffd" for b in ids.tolist())


def test_uniform_and_unigram_surprisal_by_hand(wl_root, synthetic_data):
    res = run_wl(uniform_model(), wl_root, synthetic_data.dir)
    text = val_text(synthetic_data)
    # occurrences by hand: whitespace-separated pieces whose letters are the word (punctuation stripped)
    pieces = Counter(p.strip(".,;:!?\"'()") for p in re.split(r"\s+", text[1:]))  # the first byte has no prediction
    items = res["curves"]["items"]
    assert items == sorted(w for w in WORDS if pieces[w] >= 5) and len(items) >= 6
    assert res["occurrences"] == [pieces[w] for w in items]
    for w, v in zip(items, res["curves"]["values"]):
        assert v == pytest.approx(len(w) * math.log(256), rel=1e-6)
    assert res["curves"]["covariates"]["length"] == [len(w) for w in items]
    assert res["mean_surprisal"]["value"] == pytest.approx(np.mean([len(w) * math.log(256) for w in items]), rel=1e-6)
    assert res["unaligned_occurrences"] == 0 and res["tokens"] == TOKENS

    uni = run_wl(unigram_model(), wl_root, synthetic_data.dir)
    for w, v in zip(uni["curves"]["items"], uni["curves"]["values"]):
        assert v == pytest.approx(-unigram_logprob(w), rel=1e-5)


def test_random_model_agrees_with_unbatched_scoring_word_by_word(wl_root, synthetic_data):
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=64)).eval()
    res = run_wl(model, wl_root, synthetic_data.dir, limit=4)
    assert res["selection"]["n"] == 4 and res["selection"]["unit"] == "words"
    ids = np.concatenate([read_shard(p) for p in synthetic_data.split_paths("val")])[:TOKENS].tolist()
    logp = ScoringLM(model, load_tokenizer("bytes")).token_logprobs(ids)  # one window per pass
    text = val_text(synthetic_data)
    for w, v, n in zip(res["curves"]["items"], res["curves"]["values"], res["occurrences"]):
        spans = [(m.start(1), m.end(1)) for m in re.finditer(r"(?:^|(?<=\s))[\"'(]*(%s)[.,;:!?\"')]*(?=\s|$)" % w, text)]
        spans = [(i, j) for i, j in spans if i > 0]
        assert len(spans) == n
        assert v == pytest.approx(np.mean([-logp[i - 1:j - 1].sum() for i, j in spans]), abs=1e-4)


def test_batched_token_logprobs_equal_the_unbatched_ones():
    torch.manual_seed(1)
    lm = ScoringLM(GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=16)).eval(),
                   load_tokenizer("bytes"), batch_size=3)
    ids = list(range(1, 200))
    assert np.allclose(lm.token_logprobs(ids, batched=True), lm.token_logprobs(ids), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the curves

STEPS = np.array([0, 50, 100, 200, 300])


def sigmoid_curve(x0: float, k: float = 20.0, top: float = 20.0, drop: float = 10.0) -> np.ndarray:
    x = np.log10(np.maximum(STEPS, 1e-9))
    g = np.where(STEPS > 0, 1 / (1 + np.exp(-k * (x - x0))), 0.0)
    return top - drop * g


def test_fit_recovers_ages_and_sorts_the_statuses():
    ages = [70, 100, 140]
    cols = [sigmoid_curve(math.log10(a)) for a in ages]
    cols.append(sigmoid_curve(math.log10(20), k=5))  # 90% of its drop by step 50: before the first kept step
    cols.append(np.array([20.0, 20.5, 20.2, 20.3, 20.1]))  # never below step 0: never settles
    cols.append(np.array([20.0, 19.0, 18.0, 17.0, 10.0]))  # 70% of the drop in the last interval: still moving
    cols.append(sigmoid_curve(math.log10(180)))  # 29% of its drop after step 200: not levelled off by the end
    f = lc.fit(STEPS, np.column_stack(cols))
    for j, a in enumerate(ages):
        assert f["status"][j] == lc.SETTLED and abs(f["x0"][j] - math.log10(a)) < 0.01
    assert list(f["status"][3:]) == [lc.EARLY, lc.NEVER, lc.NEVER, lc.NEVER] and f["age"][3] < 50
    assert f["progress"][1][3] > 0.85 and f["first"] == 50
    assert f["progress"][-1][0] == pytest.approx(1.0) and f["progress"][0][0] == 0.0


def test_ols_slopes_and_intervals():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    y = 1.0 - 0.5 * a + 0.25 * b + rng.normal(scale=0.01, size=200)
    r = lc.ols(y, {"a": a, "b": b})
    assert r["n"] == 200 and r["df"] == 197
    assert r["slopes"]["a"]["ci"][0] < -0.5 < r["slopes"]["a"]["ci"][1] and abs(r["slopes"]["b"]["slope"] - 0.25) < 0.005
    assert lc.ols(y[:3], {"a": a[:3], "b": b[:3]})["slopes"] is None


def test_report_section_compares_arms_on_a_hand_made_run(tmp_path):
    """The connectome's words arrive at step 4, the dense arm's at step 7 (steps 0, 2, 5, 8, 10): the section
    says so, with the ages, the comparison's sign and the figure."""
    run, request = eval_run(tmp_path, "0,1,2", "val_loss,word_learning", "val_loss,word_learning")
    steps = [0, 2, 5, 8, 10]
    words = [f"w{i}" for i in range(12)]
    for arm, age in (("connectome", 4.0), ("dense", 7.0)):
        for s in range(3):
            for step in steps:
                vals = [20 - 10 / (1 + math.exp(-12 * (math.log10(step) - math.log10(age + 0.1 * s + 0.05 * i))))
                        if step else 20.0 for i in range(12)]
                wl = {"mean_surprisal": {"value": float(np.mean(vals)), "n": 12},
                      "curves": {"items": words, "values": vals, "covariates": {
                          "log10 frequency": [i / 3 for i in range(12)], "length": [3 + i % 4 for i in range(12)]}},
                      "selection": {"selection": "all", "n": 12, "of": 12, "unit": "words"}, "occurrences": [5] * 12}
                write_eval(run, arm, s, step, {"val_loss": {"loss": 3.0, "tokens": 2048}, "word_learning": wl}, request)
    rd = results.RunResults(run)
    summ = lc.arm_summary(rd, "word_learning")
    assert set(summ) == {"connectome", "dense"} and list(summ["connectome"]["steps"]) == steps
    assert np.median(summ["connectome"]["fit"]["age"]) < 5 < np.median(summ["dense"]["fit"]["age"]) < 8
    text = report.write_report(run).read_text()
    assert "## Learning curves: word learning" in text
    row = next(line for line in text.splitlines() if line.startswith("| Connectome − NoConnectome | 3 |"))
    progress, age = row.split(" | ")[2:4]
    assert float(progress.split()[0]) > 0 and float(age.split()[0]) < 0  # earlier: more progress, lower age
    assert (run / "report" / "word_learning_ages.png").stat().st_size > 5_000
    assert "| Connectome | 12 | " in text


def test_spec():
    spec = get_task("word_learning")
    assert spec.curves == "curves" and spec.metrics[0].higher_is_better is False and spec.sampled
    assert json.dumps(spec.metrics[0].path) == '["mean_surprisal", "value"]'
