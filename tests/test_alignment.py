"""Reading times, fMRI encoding and language-selective units."""

import math

import numpy as np
import pytest
import torch

from connectomes.data.tokenizers import load_tokenizer
from connectomes.errors import DataError
from connectomes.evals import EvalContext
from connectomes.evals import fmri, langloc, reading_times
from connectomes.evals.scoring import ScoringLM
from connectomes.model import GPT, GPTConfig


def tiny_lm(tokenizer="bytes", vocab=256, block=64):
    torch.manual_seed(0)
    return ScoringLM(GPT(GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, n_embd=32, block_size=block)),
                     load_tokenizer(tokenizer), batch_size=32)


# ---------------------------------------------------------------- word/token alignment


@pytest.mark.parametrize("tokenizer", ["bytes", "gpt2"])
def test_alignment_on_hand_made_cases(tokenizer, data_root):
    tok = load_tokenizer(tokenizer)
    words = ["If", "you", "were", "to", "journey", "to", "England,", "you'd", "see", "\"mountains.\"", "Unbelievable!", "—", "ok"]
    text, spans = reading_times.word_spans(words)
    ids, tspans = tok.encode_with_offsets(text)
    owner = reading_times.assign_tokens(tspans, spans)
    assert owner == sorted(owner)  # tokens go to words in order
    assert set(owner) == set(range(len(words)))  # every word has tokens
    for w in range(len(words)):  # a word's tokens spell the word (plus the space before it)
        piece = tok.decode([i for i, o in zip(ids, owner) if o == w])
        assert piece.strip() == words[w]


def test_gpt2_leading_space_token_goes_to_the_following_word():
    tok = load_tokenizer("gpt2")
    text, spans = reading_times.word_spans(["Hello", "world"])
    ids, tspans = tok.encode_with_offsets(text)
    assert tok.decode([ids[1]]) == " world"
    assert reading_times.assign_tokens(tspans, spans) == [0, 1]


def test_every_natural_stories_word_gets_tokens_and_no_token_is_shared(data_root):
    tok = load_tokenizer("gpt2")
    words, _ = reading_times._load(str(data_root / "naturalstories"), "processed_wordinfo.tsv")
    assert len(words) == 10256
    for s in sorted({w.story for w in words}):
        ws = [w.word for w in words if w.story == s]
        text, spans = reading_times.word_spans(ws)
        ids, tspans = tok.encode_with_offsets(text)
        owner = reading_times.assign_tokens(tspans, spans)
        assert len(owner) == len(ids)  # each token assigned exactly once
        assert set(owner) == set(range(len(ws))), f"story {s}: a word without tokens"


def test_word_surprisal_is_the_sum_of_its_tokens_in_bits():
    lm = tiny_lm()
    words = ["the", "cat", "sat."]
    bits, tokens_of = reading_times.word_surprisals(lm, words)
    lp = lm.token_logprobs(lm.tokenizer.encode("the cat sat."))
    assert math.isnan(bits[0])  # holds the context's first token
    for w in (1, 2):
        assert bits[w] == pytest.approx(sum(-lp[t - 1] for t in tokens_of[w]) / math.log(2))


def test_sentence_initial_detection():
    words = ["It", "rained.", "Then", "\"Stop!\"", "she", "said.\"", "Fine", "ok"]
    assert reading_times.sentence_initial(words) == [True, False, True, False, True, False, True, False]


def test_reading_times_task_end_to_end(data_root, tmp_path):
    res = reading_times.run(tiny_lm(), EvalContext(data_root=data_root, limit=1000, out_dir=tmp_path))
    assert res["stories"] == [1] and res["words"] > 900
    assert -1 < res["all_words"]["r"] < 1 and res["no_sentence_initial"]["n"] < res["all_words"]["n"]
    assert (tmp_path / "reading_times_words.tsv").read_text().count("\n") == res["words"] + 1


def test_mismatched_story_files_are_refused(tmp_path):
    (tmp_path / "all_stories.tok").write_text("word\tzone\titem\nIf\t1\t1\n")
    (tmp_path / "processed_wordinfo.tsv").write_text("word\tzone\titem\tmeanItemRT\nWhen\t1\t1\t300\n")
    with pytest.raises(DataError, match="disagree at story 1 zone 1"):
        reading_times._load(str(tmp_path), "processed_wordinfo.tsv")


def test_missing_natural_stories_file(tmp_path):
    with pytest.raises(DataError, match="all_stories.tok is missing"):
        reading_times._load(str(tmp_path), "processed_wordinfo.tsv")


# ---------------------------------------------------------------- ridge / CV


def independent_cv_r(X, y, alphas):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    rs = []
    for tr, te in KFold(5, shuffle=True, random_state=0).split(X):
        pred = RidgeCV(alphas=alphas).fit(X[tr], y[tr]).predict(X[te])
        rs.append(np.corrcoef(pred, y[te])[0, 1])
    return float(np.mean(rs))


def test_cv_score_matches_sklearn_on_a_known_linear_relation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20))
    y = X @ rng.normal(size=20) + 0.3 * rng.normal(size=400)
    res = fmri.cv_encoding_score(X, y)
    assert res["r"] > 0.95
    assert res["r"] == pytest.approx(independent_cv_r(X, y, fmri.DEFAULT_ALPHAS), abs=1e-9)
    assert len(res["fold_r"]) == 5


def test_cv_score_near_zero_on_shuffled_targets():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 20))
    y = rng.permutation(X @ rng.normal(size=20))
    assert abs(fmri.cv_encoding_score(X, y)["r"]) < 0.15


def test_constant_prediction_scores_zero():
    X = np.zeros((50, 3))
    y = np.random.default_rng(0).normal(size=50)
    assert fmri.cv_encoding_score(X, y)["r"] == 0.0


def test_fmri_task_end_to_end_and_roi_choice(data_root):
    lm = tiny_lm()
    res = fmri.run(lm, EvalContext(data_root=data_root, limit=100))
    assert len(res["per_layer"]) == 3 and res["items"] == 100 and "best_r_over_ceiling" in res
    other = fmri.run(lm, EvalContext(data_root=data_root, limit=100, options={"fmri.roi": "lang_LH_IFG"}))
    assert other["roi"] == "lang_LH_IFG" and "noise_ceiling" not in other
    with pytest.raises(DataError, match="lang_LH_netw"):
        fmri.run(lm, EvalContext(data_root=data_root, limit=100, options={"fmri.roi": "V1"}))


def test_missing_fmri_file(tmp_path):
    with pytest.raises(DataError, match="bold_response_LH.csv is missing"):
        fmri.run(tiny_lm(), EvalContext(data_root=tmp_path))


# ---------------------------------------------------------------- localizer


def test_select_top_picks_exact_count_with_index_ties():
    t = np.array([[3.0, 1.0, 3.0], [2.0, 3.0, -np.inf]])
    m = langloc.select_top(t, 50)  # floor(0.5 * 6) = 3 of the four 3.0-or-better... ties by index
    assert m.sum() == 3 and m[0, 0] and m[0, 2] and m[1, 1]
    assert langloc.select_top(t, 1).sum() == 0


def test_localizer_finds_the_planted_units():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(240, 300))
    b = rng.normal(size=(240, 300))
    a[:, [7, 150, 299]] += 2.0  # selective units
    t = langloc.welch_t(a, b)
    m = langloc.select_top(t, 1)
    assert m.sum() == 3 and set(np.flatnonzero(m)) == {7, 150, 299}
    assert np.array_equal(m, langloc.select_top(langloc.welch_t(a, b), 1))


def test_real_stimuli_are_240_matched_pairs(data_root):
    s, n, hashes = langloc.load_stimuli(str(data_root / "langloc"))
    assert len(s) == len(n) == 240 and len(hashes) == 10
    assert all(len(x.split()) == 12 and x == x.lower() for x in s + n)


def test_langloc_task_end_to_end_and_deterministic(data_root, tmp_path):
    lm = tiny_lm()
    ctx = EvalContext(data_root=data_root, limit=100, out_dir=tmp_path)
    a = langloc.run(lm, ctx)
    b = langloc.run(lm, ctx)
    assert a["top1"]["units"] == math.floor(0.01 * 2 * 32) and a["top10"]["units"] == math.floor(0.1 * 64)
    assert sum(a["top10"]["per_layer_units"]) == 6
    assert np.load(tmp_path / "langloc_top10pct_mask.npy").sum() == 6
    assert a["top10"]["r"] == b["top10"]["r"]


def test_malformed_localizer_csv(tmp_path):
    (tmp_path / "x.csv").write_text("stim1,stim2\n1,HELLO\n")
    with pytest.raises(DataError, match=r"x\.csv:2: missing column"):
        langloc.load_stimuli(str(tmp_path))
