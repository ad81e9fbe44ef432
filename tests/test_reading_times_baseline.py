"""Reading times above a baseline: ΔR² of surprisal over word length and frequency (with spill-over),
leave-one-story-out; word counts of the study's own large split; the task revision that re-scores
older results."""

import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from connectomes.data.config import DataConfig
from connectomes.data.prepare import prepare_data
from connectomes.data.shards import read_shard
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals import registry, runner, word_frequency
from connectomes.evals.alignment_data import load_natural_stories
from connectomes.evals.context import EvalContext
from connectomes.evals.regression import compare_nested
from connectomes.evals.scoring import ScoringLM
from connectomes.evals.tasks import reading_times
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.checkpoint import save_step

# ---------------------------------------------------------------- the regression, by hand


def test_delta_r2_by_hand_on_a_perfectly_linear_table():
    # y = 2x + 1 in three stories of two words. Full model (intercept + x): every held-out residual is 0, R² = 1.
    # Baseline (intercept only): each story is predicted by the mean of the other two stories' y:
    # story 1 by (5+7+9+11)/4 = 8, story 2 by (1+3+9+11)/4 = 6, story 3 by (1+3+5+7)/4 = 4; residuals
    # -7 -5 | -1 1 | 5 7, SSE 150; SST around the mean 6 is 25+9+1+1+9+25 = 70. R²_base = 1 - 150/70 = -8/7,
    # so ΔR² = 1 + 8/7 = 15/7.
    x = np.arange(6.0)
    res = compare_nested(2 * x + 1, {}, {"x": x}, np.array([1, 1, 2, 2, 3, 3]))
    assert res["r2_full"] == pytest.approx(1.0, abs=1e-12)
    assert res["r2_base"] == pytest.approx(-8 / 7, rel=1e-12)
    assert res["delta_r2"] == pytest.approx(15 / 7, rel=1e-12)
    assert math.isnan(res["delta_loglik"])  # a perfect fit leaves no variance: no likelihood, said as NaN
    assert res["coefficients"] == pytest.approx({"intercept": 1.0, "x": 2.0})
    assert [f["group"] for f in res["folds"]] == [1, 2, 3] and res["n"] == 6


def independent(y, base, full, groups):
    """The same quantities written out from the normal equations, fold by fold, sharing no code."""
    y = np.asarray(y, float)
    sse = {"b": 0.0, "f": 0.0}
    ll = {"b": 0.0, "f": 0.0}
    for g in np.unique(groups):
        te, tr = groups == g, groups != g
        for k, X in (("b", base), ("f", full)):
            beta = np.linalg.solve(X[tr].T @ X[tr], X[tr].T @ y[tr])
            s2 = np.sum((y[tr] - X[tr] @ beta) ** 2) / tr.sum()
            e = y[te] - X[te] @ beta
            sse[k] += np.sum(e ** 2)
            ll[k] += np.sum(-0.5 * np.log(2 * np.pi * s2) - e ** 2 / (2 * s2))
    sst = np.sum((y - y.mean()) ** 2)
    return (sse["b"] - sse["f"]) / sst, (ll["f"] - ll["b"]) / len(y)


def test_delta_r2_and_loglik_agree_with_an_independent_computation():
    rng = np.random.default_rng(3)
    n = 60
    groups = np.repeat([1, 2, 3, 4], 15)
    length, logf, surp = rng.integers(1, 10, n).astype(float), rng.normal(-10, 2, n), rng.normal(8, 3, n)
    y = 300 + 5 * length - 3 * logf + 2 * surp + rng.normal(0, 10, n)
    res = compare_nested(y, {"length": length, "logf": logf}, {"surprisal": surp}, groups)
    ones = np.ones(n)
    d_r2, d_ll = independent(y, np.column_stack([ones, length, logf]), np.column_stack([ones, length, logf, surp]),
                             groups)
    assert res["delta_r2"] == pytest.approx(d_r2, rel=1e-10)
    assert res["delta_loglik"] == pytest.approx(d_ll, rel=1e-10)
    assert res["delta_r2"] > 0.05  # surprisal carries a real share of y here


# ---------------------------------------------------------------- word counts of a prepared split


def test_word_keys():
    assert word_frequency.word_key('"Mountains."') == "mountains"
    assert word_frequency.word_key("don’t") == word_frequency.word_key("don't") == "don't"
    assert word_frequency.word_key("(well-known),") == "well-known"
    assert word_frequency.word_key("—") == "—"  # punctuation only: kept as it is, lower-cased


def test_counts_are_the_decoded_splits_words_whatever_the_chunking(synthetic_data, monkeypatch):
    info = synthetic_data.meta["splits"]["large"]
    tokens = np.concatenate([np.asarray(read_shard(synthetic_data.dir / n)) for n in info["shards"]])
    text = bytes(tokens.astype(np.uint8)).decode("utf-8", errors="replace")
    want = Counter(word_frequency.word_key(w) for doc in text.split("\x00") for w in doc.split())
    word_frequency._cached_counts.cache_clear()
    counts = word_frequency.split_word_counts(synthetic_data.dir)
    assert counts.counts == dict(want) and counts.total == sum(want.values())
    src = counts.source
    assert (src["split"], src["tokens_counted"], src["tokens_in_split"], src["types"]) == \
        ("large", 400_000, 400_000, len(want))
    monkeypatch.setattr(word_frequency, "CHUNK_TOKENS", 997)  # chunks cut words and documents anywhere
    word_frequency._cached_counts.cache_clear()
    again = word_frequency.split_word_counts(synthetic_data.dir)
    assert again.counts == counts.counts and again.source["counts_sha256"] == src["counts_sha256"]
    # a token budget counts the first N tokens only
    first = word_frequency.split_word_counts(synthetic_data.dir, max_tokens=1000)
    assert first.source["tokens_counted"] == 1000 and first.total < counts.total


def test_add_one_smoothing_over_the_counted_and_scored_types():
    counts = word_frequency.WordCounts({"the": 6, "cat": 2}, 8, {})
    logf, rec = counts.log2_frequencies(["The", "cat.", "zebra", "Zebra"])
    # V = 2 counted types + 1 scored type the counts lack; N + V = 11
    assert logf.tolist() == pytest.approx([math.log2(7 / 11), math.log2(3 / 11), math.log2(1 / 11), math.log2(1 / 11)])
    assert (rec["N"], rec["V"], rec["scored_types_unseen"], rec["scored_words_unseen"]) == (8, 3, 1, 2)


# ---------------------------------------------------------------- the task on Natural Stories


@pytest.fixture(scope="module")
def novels(data_root, tmp_path_factory):
    """A prepared folder of the real corpus (bytes, a 3M-token large split): frequencies as a study has them."""
    out = tmp_path_factory.mktemp("novels") / "data"
    cfg = DataConfig(source="local", path=str(data_root / "corpus" / "novels"), tokenizer="bytes",
                     large_tokens=3_000_000, small_tokens=100_000, val_tokens=50_000, seed=0)
    prepare_data(cfg, out, data_root=data_root, progress=False)
    return out


def test_an_untrained_model_sits_near_zero_where_r_does_not(data_root, novels):
    """Step 0: byte surprisal of an untrained model tracks word length, so r is ~0.32 already; over the
    length + frequency baseline it adds nothing: |ΔR²| < 0.003 (measured: 4e-5 and -5e-4 for these two
    seeds; a 4 x 128 model trained 400 steps on replicate-cpu's large split reaches 0.028)."""
    tok = load_tokenizer("bytes")
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=64))
        res = reading_times.run(ScoringLM(model, tok, batch_size=32),
                                EvalContext(data_root=data_root, prepared_dir=novels))
        reg = res["baseline_regression"]
        assert res["all_words"]["r"] > 0.25
        assert abs(reg["delta_r2"]) < 0.003 and abs(reg["delta_loglik"]) < 0.003
        assert reg["n"] == 10256 - 20 and reg["excluded"] == {"first_of_story": 10, "no_surprisal_here_or_before": 10}
        assert [f["story"] for f in reg["folds"]] == list(range(1, 11))
        freq = reg["frequencies"]
        assert freq["prepared_dir"] == str(novels.resolve()) and freq["tokens_counted"] == 3_000_000
        assert freq["split_sha256"] and freq["counts_sha256"] and freq["N"] == freq["words"] > 400_000
        assert reg["predictors"]["full"] == ["intercept", "length", "log2_frequency", "prev_length",
                                             "prev_log2_frequency", "surprisal", "prev_surprisal"]


class RTModel:
    """A stand-in model whose word surprisal is the word's reading time / 50 bits plus noise: all of it on
    the word's last byte, so the task's own token-to-word assignment sums it back."""

    def __init__(self, words, noise: float = 1.0):
        self.tokenizer = load_tokenizer("bytes")
        rng = np.random.default_rng(0)
        self.bits = {}
        for story in sorted({w.story for w in words}):
            ws = [w for w in words if w.story == story]
            text, spans = reading_times.join_words([w.word for w in ws])
            self.bits[text] = [(end - 1, w.rt / 50 + rng.normal(0, noise)) for w, (_, end) in zip(ws, spans)]

    def token_logprobs(self, ids):
        text = self.tokenizer.decode(ids)
        logp = np.zeros(len(ids) - 1)
        for last, bits in self.bits[text]:
            if last >= 1:
                logp[last - 1] = -bits * math.log(2)
        return logp


def test_a_model_whose_surprisal_predicts_reading_times_gains_clearly(data_root, synthetic_data):
    words = list(load_natural_stories(data_root / "naturalstories").words)
    res = reading_times.run(RTModel(words), EvalContext(data_root=data_root, prepared_dir=synthetic_data.dir))
    reg = res["baseline_regression"]
    # measured: ΔR² 0.41 (folds 0.32-0.50), ΔLL 0.32 nats per word; the untrained model's are below 0.003
    assert reg["delta_r2"] > 0.3 and reg["delta_loglik"] > 0.2
    assert all(f["delta_r2"] > 0.2 for f in reg["folds"])
    assert reg["coefficients"]["surprisal"] > 10  # ms per bit: 50 by construction, shrunk by the noise


def test_without_a_prepared_folder_it_says_why_and_keeps_r(synthetic_eval_root, capsys):
    torch.manual_seed(0)
    lm = ScoringLM(GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=64)), load_tokenizer("bytes"))
    res = reading_times.run(lm, EvalContext(data_root=synthetic_eval_root))
    assert res["baseline_regression"] == {"skipped": reading_times.NO_PREPARED}
    assert "--prepared DIR" in capsys.readouterr().err and math.isfinite(res["all_words"]["r"])
    metric = registry.metric_ids()["reading_times.baseline_regression.delta_r2"][1]
    assert reading_times.describe(res, metric) == reading_times.NO_PREPARED


def test_one_story_cannot_be_cross_validated_over_stories(synthetic_eval_root, synthetic_data):
    torch.manual_seed(0)
    lm = ScoringLM(GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=64)), load_tokenizer("bytes"))
    reg = reading_times.run(lm, EvalContext(data_root=synthetic_eval_root, prepared_dir=synthetic_data.dir))[
        "baseline_regression"]
    assert "at least two stories" in reg["skipped"] and "delta_r2" not in reg and reg["n"] == 318


def test_the_metric_is_registered_beside_r_with_its_figures():
    spec = registry.tasks()["reading_times"]
    labels = [m.label for m in spec.metrics]
    assert labels[:2] == ["reading times r (all words)", "reading times ΔR² over length + frequency"]
    m = spec.metrics[1]
    assert m.path == ("baseline_regression", "delta_r2") and m.higher_is_better and m.chance is None
    assert set(m.figures) == {"steps", "frontier"} and spec.revision == 2


# ---------------------------------------------------------------- revisions: older results are scored again


def test_a_result_of_an_older_task_revision_is_evaluated_again(tmp_path, monkeypatch):
    cfg = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=64)
    torch.manual_seed(0)
    folder = save_step(tmp_path / "run" / "step_000010", GPT(cfg), {"step": 10, "model_config": cfg.to_dict(),
                                                                      "tokenizer": "bytes"})
    fake = dataclasses.replace(registry.tasks()["val_loss"], name="val_loss", run=lambda lm, ctx: {"loss": 1.0})
    monkeypatch.setitem(registry.tasks(), "val_loss", fake)
    out = tmp_path / "eval"
    calls = []
    real = runner.evaluate_checkpoint
    monkeypatch.setattr(runner, "evaluate_checkpoint", lambda p, t, c, **kw: calls.append(t) or real(p, t, c, **kw))
    ctx = EvalContext()
    runner.evaluate_steps([folder], ["val_loss"], ctx, out)
    assert json.loads((out / "step_000010.json").read_text())["tasks"]["val_loss"]["task_revision"] == 1
    runner.evaluate_steps([folder], ["val_loss"], ctx, out)
    assert calls == [["val_loss"]]  # current: served from the JSON
    monkeypatch.setitem(registry.tasks(), "val_loss", dataclasses.replace(fake, revision=2))
    assert "revision 1 of the task, which is now at revision 2" in registry.outdated(
        "val_loss", json.loads((out / "step_000010.json").read_text())["tasks"]["val_loss"])
    runner.evaluate_steps([folder], ["val_loss"], ctx, out)
    assert calls == [["val_loss"], ["val_loss"]]
    assert json.loads((out / "step_000010.json").read_text())["tasks"]["val_loss"]["task_revision"] == 2
    assert registry.outdated("val_loss", {"loss": 1.0}) is not None  # no key: revision 1


# ---------------------------------------------------------------- in the report


def _rt_result(r: float, delta: float | None, revision: int | None) -> dict:
    res = {"all_words": {"r": r, "p": 0.0, "n": 10246}, "no_sentence_initial": {"r": r, "p": 0.0, "n": 9500},
           "words": 10256, "selection": {"selection": "all", "n": 10246, "of": 10256, "unit": "words"}}
    if delta is not None:
        res["baseline_regression"] = {"delta_r2": delta, "delta_loglik": delta / 2, "n": 10236,
                                      "folds": [{"story": s} for s in range(1, 11)],
                                      "frequencies": {"tokens_counted": 12_000_000, "split": "large", "words": 2_209_659}}
    return res if revision is None else {**res, "task_revision": revision}


def test_the_report_shows_delta_r2_beside_r_with_its_step_0_floor_and_leaves_older_results_out(tmp_path):
    from connectomes.analysis import figures, results, tables
    from connectomes.core.integrity import sealed
    from test_report_stats import eval_run

    run, request = eval_run(tmp_path, "0,1", "reading_times", "reading_times")
    for arm, gain in (("connectome", 0.03), ("dense", 0.02)):
        for s in (0, 1):
            for step, res in ((0, _rt_result(0.32, -0.0005 * (s + 1), 2)), (10, _rt_result(0.37, gain + 0.001 * s, 2))):
                p = run / "eval" / arm / f"seed_{s}" / f"step_{step:06d}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json.dumps(sealed({"step": step, "tasks": {"reading_times": res}, **request})))
    rd = results.RunResults(run)
    head = tables.headline_table(rd)
    assert head[3] == ("| reading times ΔR² over length + frequency | 10,236 words, leave-one-story-out over 10 "
                       "stories; frequencies from 12,000,000 tokens of the large split (2,209,659 words) | "
                       "0.0305 ± 0.0005 | 0.0205 ± 0.0005 |")
    floors = tables.floor_table(rd)
    assert floors[3] == ("| reading times ΔR² over length + frequency | — | -0.0008 ± 0.0003 → 0.0305 ± 0.0005 | "
                         "-0.0008 ± 0.0003 → 0.0205 ± 0.0005 |")
    fig = next(f for f in figures.report_figures(rd) if f.name == "reading_times")  # one figure, r and ΔR² side by side
    assert fig.caption == ("Reading-time alignment (reading times r (all words), reading times ΔR² over length + "
                           "frequency) across training steps (peak circled).")
    assert figures.draw_figure(fig, tmp_path).stat().st_size > 10_000
    # a result of the task's first revision (no baseline regression, no revision recorded) is left out, named
    p = run / "eval" / "dense" / "seed_1" / "step_000010.json"
    p.write_text(json.dumps(sealed({"step": 10, "tasks": {"reading_times": _rt_result(0.37, None, None)}, **request})))
    rd = results.RunResults(run)
    assert [(q.name, why) for q, why in rd.left_out] == [(
        "step_000010.json", "stale: its reading_times result was made by revision 1 of the task, which is now at "
                            "revision 2; that task's numbers are not used (the file's other tasks are)")]
    r_metric = registry.tasks()["reading_times"].metrics[0]
    assert rd.metric("dense", 1, 10, "reading_times", r_metric) is None
    assert rd.task_result("dense", 1, 10, "reading_times") is None
    assert rd.metric("dense", 0, 10, "reading_times", r_metric) == 0.37
