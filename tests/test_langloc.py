"""langloc: unit selection, the localizer stimuli, and the task end to end."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError, UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import langloc
from connectomes.evals.alignment_data import load_langloc
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

SMALL_DATA = Path(__file__).parent / "fixtures" / "data"  # a few real files: tests that need little real data



def tiny_lm(tokenizer="bytes", width=64):
    tok = load_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=width, block_size=64))
    return ScoringLM(model, tok, batch_size=64)


# ---------------------------------------------------------------- selection


def test_unit_count_is_an_exact_floor():
    assert langloc.unit_count(1, 12 * 768) == 92 and langloc.unit_count(10, 12 * 768) == 921  # notes §11.4
    assert math.floor(29 / 100 * 100) == 28 and langloc.unit_count(29, 100) == 29  # no float rounding
    assert langloc.unit_count(1, 99) == 0 and langloc.unit_count(100, 7) == 7


def test_select_top_breaks_ties_by_index():
    t = np.array([[3.0, 1.0, 3.0], [2.0, 3.0, -np.inf]])
    m = langloc.select_top(t, 50)  # 3 units among the three 3.0s: all of them
    assert m.tolist() == [[True, False, True], [False, True, False]]
    m = langloc.select_top(t, 100 / 3)  # 2 units: the first two 3.0s in flat order
    assert m.tolist() == [[True, False, True], [False, False, False]]
    assert langloc.select_top(t, 1).sum() == 0


def test_localizer_finds_planted_units_in_a_synthetic_network():
    rng = np.random.default_rng(0)
    layers, width = 3, 100
    sent = rng.normal(size=(240, layers * width))
    non = rng.normal(size=(240, layers * width))
    planted = [7, 150, 299]  # layer 0 unit 7, layer 1 unit 50, layer 2 unit 99
    sent[:, planted] += 2.0
    non[:, 42] += 5.0  # selective for non-words: never a language unit
    t = langloc.welch_t(sent, non).reshape(layers, width)
    m = langloc.select_top(t, 1)
    assert m.sum() == 3 and sorted(np.flatnonzero(m)) == planted
    assert m.sum(axis=1).tolist() == [1, 1, 1]
    m10 = langloc.select_top(t, 10)
    assert m10.sum() == 30 and m10.reshape(-1)[planted].all() and not m10.reshape(-1)[42]
    assert np.array_equal(m10, langloc.select_top(langloc.welch_t(sent, non).reshape(layers, width), 10))


def test_welch_t_matches_the_formula_and_skips_constant_units():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 2, size=(30, 2)), rng.normal(0, 1, size=(50, 2))
    a[:, 1] = b[0, 1] = 0.0
    b[:, 1] = 0.0
    t = langloc.welch_t(a, b)
    expected = (a[:, 0].mean() - b[:, 0].mean()) / math.sqrt(a[:, 0].var(ddof=1) / 30 + b[:, 0].var(ddof=1) / 50)
    assert t[0] == pytest.approx(expected) and t[1] == -np.inf


# ---------------------------------------------------------------- stimuli


def test_localizer_stimuli():
    stim = load_langloc(SMALL_DATA / "langloc")  # the real 10 files (tests/fixtures/data/README.md)
    assert len(stim.sentences) == len(stim.nonwords) == 240 and len(stim.sha256) == 10
    assert stim.sentences[0] == "just the barest suggestion of a heel is found on teenage pumps"
    assert all(len(x.split(" ")) == 12 and x == x.lower() for x in stim.sentences + stim.nonwords)


def test_every_localizer_stimulus_has_12_gpt2_tokens(data_root):  # gpt2 BPE file from the data folder
    stim = load_langloc(data_root / "langloc")
    gpt2 = load_tokenizer("gpt2")  # so the reference's 12-token truncation always cuts at the 12th token
    assert min(len(gpt2.encode(x)) for x in stim.sentences + stim.nonwords) >= 12


def write_csv(path, rows):
    head = ",".join(f"stim{k}" for k in range(1, 15))
    path.write_text(head + "\n" + "".join(",".join(r) + "\n" for r in rows))


def trial(i, cond, word="WORD"):
    return [str(i)] + [word] * 12 + [cond]


def test_bad_stimulus_files(tmp_path):
    with pytest.raises(DataError, match="no localizer CSVs"):
        load_langloc(tmp_path)
    (tmp_path / "x.csv").write_text("stim1,stim2\n1,HELLO\n")
    with pytest.raises(DataError, match=r"x\.csv lacks the column.*stim3"):
        load_langloc(tmp_path)
    write_csv(tmp_path / "x.csv", [trial(1, "S"), trial(2, "Q")])
    with pytest.raises(DataError, match=r"x\.csv:3: condition 'Q'"):
        load_langloc(tmp_path)
    write_csv(tmp_path / "x.csv", [trial(1, "S"), trial(2, "S"), trial(3, "N")])
    with pytest.raises(DataError, match="2 sentences but 1 non-word lists"):
        load_langloc(tmp_path)
    write_csv(tmp_path / "x.csv", [trial(1, "S"), trial(2, "N", word="")])
    with pytest.raises(DataError, match=r"x\.csv:3: a word is empty"):
        load_langloc(tmp_path)


# ---------------------------------------------------------------- the task


def test_truncation_default_follows_the_tokenizer():
    ctx = EvalContext()
    assert langloc._truncate_option(ctx, "gpt2") == 12 and langloc._truncate_option(ctx, "bpe-8192") == 12
    assert langloc._truncate_option(ctx, "bytes") == 0
    assert langloc._truncate_option(EvalContext(options={"langloc.truncate": "0"}), "gpt2") == 0
    with pytest.raises(UserError, match="langloc.truncate"):
        langloc._truncate_option(EvalContext(options={"langloc.truncate": "-3"}), "gpt2")


def test_truncated_stimuli_use_the_12th_token(data_root):  # gpt2 BPE file from the data folder
    lm = tiny_lm("gpt2", width=32)
    text = "the quick brown fox jumps over the lazy dog and then it sleeps soundly"
    ids = lm.tokenizer.encode(text)
    assert len(ids) > 12
    got = langloc.block_states(lm, [text], 12, None)
    want = lm.last_token_hidden([ids[:12]])[:, 1:]
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(langloc.block_states(lm, [text], 0, None), want)


def test_langloc_end_to_end_is_deterministic(synthetic_eval_root, tmp_path):
    lm = tiny_lm("bytes", width=64)  # 2 blocks x 64 = 128 units: 1 at 1%, 12 at 10%
    a = langloc.run(lm, EvalContext(data_root=synthetic_eval_root, limit=60, out_dir=tmp_path / "a"))
    b = langloc.run(lm, EvalContext(data_root=synthetic_eval_root, limit=60, out_dir=tmp_path / "b"))
    assert a["units_total"] == 128 and a["layers"] == 2 and a["truncate_tokens"] == 0
    assert a["top1"]["units"] == 1 and a["top10"]["units"] == 12 and sum(a["top10"]["per_layer_units"]) == 12
    for key in ("top1", "top10"):
        ma, mb = (np.load(tmp_path / d / f"langloc_{key}pct_mask.npy") for d in ("a", "b"))
        assert ma.shape == (2, 64) and ma.dtype == bool and np.array_equal(ma, mb)
        assert a[key]["r"] == b[key]["r"] and -1 <= a[key]["r"] <= 1
    t = np.load(tmp_path / "a" / "langloc_t.npy")
    assert np.array_equal(np.load(tmp_path / "a" / "langloc_top1pct_mask.npy"), t == t.max())
    assert a["fmri_items"] == 120 and "bold_response_LH.csv" in a["data_sha256"]  # the limit is ignored
    assert (a["partitions"], a["folds"]) == (5, 5)
    assert a["top10"]["r"] == pytest.approx(np.mean(a["top10"]["partition_rs"])) and a["top10"]["se"] > 0
    assert a["top10"]["alpha_edge"]["folds"] == 25 and np.shape(a["top10"]["alphas"]) == (5, 5)


def test_langloc_options(synthetic_eval_root):
    lm = tiny_lm("bytes", width=32)  # 64 units: no unit at 1%
    res = langloc.run(lm, EvalContext(data_root=synthetic_eval_root, limit=50, options={
        "langloc.percents": "1,12.5", "langloc.abs": "true", "fmri.partitions": "1"}))
    assert res["abs"] is True and res["partitions"] == 1 and res["top12.5"]["se"] is None
    assert res["top1"]["units"] == 0 and math.isnan(res["top1"]["r"])
    assert res["top12.5"]["units"] == 8
    with pytest.raises(UserError, match="langloc.abs"):
        langloc.run(lm, EvalContext(data_root=synthetic_eval_root, limit=50, options={"langloc.abs": "maybe"}))
    with pytest.raises(UserError, match="langloc.percents"):
        langloc.run(lm, EvalContext(data_root=synthetic_eval_root, limit=50, options={"langloc.percents": "0"}))
