"""ScoringLM against independent, unpadded, one-request-at-a-time computations from raw logits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

W = 24  # the tiny model's window


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=W)).eval()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bytes")


def logp_rows(model, ids: list[int]) -> torch.Tensor:
    """log-softmax of the logits of one unpadded sequence, float64 [len, V]."""
    with torch.no_grad():
        return F.log_softmax(model(torch.tensor(ids)[None])[0].double(), dim=-1)


def hand_loglikelihood(model, context, continuation, window, eot):
    """Sum of log p(x_t | everything before x_t), keeping at most ``window`` tokens of conditioning:
    written token by token, without the batch code's slicing."""
    seq = (list(context) or [eot]) + list(continuation)
    first = len(seq) - len(continuation)
    keep = seq[-(window + 1):]
    offset = len(seq) - len(keep)
    lp = logp_rows(model, keep[:-1])
    total, n = 0.0, 0
    for t in range(max(first, offset + 1), len(seq)):
        total += lp[t - offset - 1, seq[t]].item()
        n += 1
    return total, n


def requests(tok):
    texts = [("The cat", " sat."), ("", " Hello"), ("x" * 40, " and a long context"),
             ("ctx", " a continuation longer than the whole window of the model"),
             ("A man is sitting on a roof. He", " is using wrap to wrap a pair of skis."), ("a", "b")]
    return [(tok.encode(c), tok.encode(x)) for c, x in texts]


def test_loglikelihood_equals_hand_computation(model, tok):
    reqs = requests(tok)
    got = ScoringLM(model, tok, batch_size=4).loglikelihood(reqs)
    for (c, x), (lp, n) in zip(reqs, got):
        want, want_n = hand_loglikelihood(model, c, x, W, tok.eot_id)
        assert n == want_n
        assert lp == pytest.approx(want, abs=1e-4)


def test_truncation_rules(model, tok):
    lm = ScoringLM(model, tok)
    ctx, long_cont = list(range(1, 41)), list(range(100, 100 + W + 5))
    inp, tgt = lm._fit(ctx, [7, 8])
    assert inp == (ctx + [7])[-W:] and tgt == [7, 8]  # context cut from the left, continuation whole
    inp, tgt = lm._fit(ctx, long_cont)
    assert tgt == long_cont[-W:] and inp == long_cont[-W - 1:-1]  # continuation alone too long: its tail
    inp, tgt = lm._fit([], [5, 6])
    assert inp == [tok.eot_id, 5] and tgt == [5, 6]
    with pytest.raises(ValueError, match="empty continuation"):
        lm.loglikelihood([([1], [])])


def test_results_independent_of_batch_size_and_in_input_order(model, tok):
    reqs = requests(tok)
    one = ScoringLM(model, tok, batch_size=1).loglikelihood(reqs)
    many = ScoringLM(model, tok, batch_size=16).loglikelihood(reqs)
    assert [n for _, n in one] == [n for _, n in many]
    assert [v for v, _ in one] == pytest.approx([v for v, _ in many], abs=1e-5)
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = ScoringLM(model, tok, batch_size=16).loglikelihood([reqs[i] for i in perm])
    assert [v for v, _ in shuffled] == pytest.approx([many[i][0] for i in perm], abs=1e-5)


def test_token_logprobs_sliding_window(model, tok):
    lm = ScoringLM(model, tok)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 256, size=3 * W + 7).tolist()
    got = lm.token_logprobs(ids)
    assert got.shape == (len(ids) - 1,)
    stride = W // 2
    for t in range(1, len(ids)):
        # the window that scores t: the first one, or the k-th with k = ceil((t - W) / stride)
        start = 0 if t <= W else -(-(t - W) // stride) * stride
        assert t - start <= W and (t <= W or t - start >= W // 2)
        want = logp_rows(model, ids[start:t])[-1, ids[t]].item()
        assert got[t - 1] == pytest.approx(want, abs=1e-4), t
    short = lm.token_logprobs(ids[:10])
    lp = logp_rows(model, ids[:9])
    assert short == pytest.approx([lp[t - 1, ids[t]].item() for t in range(1, 10)], abs=1e-5)
    assert lm.token_logprobs([5]).shape == (0,)


def test_loglikelihood_rolling_whole_texts_after_end_of_text(model, tok):
    """Within the window: the same as a request with an empty context. Past it: every token scored once, in
    token_logprobs' windows (each token conditioned on its window's tokens only), nothing cut; batched."""
    lm = ScoringLM(model, tok, batch_size=3)
    rng = np.random.default_rng(1)
    seqs = [tok.encode("short one"), rng.integers(1, 256, size=W).tolist(), rng.integers(1, 256, size=W + 1).tolist(),
            rng.integers(1, 256, size=3 * W + 5).tolist(), [7]]
    got = lm.loglikelihood_rolling(seqs)
    assert [n for _, n in got] == [len(s) for s in seqs]
    for s, (lp, _) in zip(seqs, got):
        assert lp == pytest.approx(lm.token_logprobs([tok.eot_id] + s).sum(), abs=1e-4)
    whole = lm.loglikelihood([([], s) for s in seqs[:2]])
    assert [v for v, _ in got[:2]] == pytest.approx([v for v, _ in whole], abs=1e-5)
    # past the window, by hand: window k reads from k * W/2 and scores the W/2 tokens after the last window's
    ids = [tok.eot_id] + seqs[3]  # 3 W + 6 = 78 tokens
    assert lm.windows(len(ids)) == [(0, 1, 25), (12, 25, 37), (24, 37, 49), (36, 49, 61), (48, 61, 73), (60, 73, 78)]
    want = 0.0
    for start, first, end in lm.windows(len(ids)):
        lp = logp_rows(model, ids[start:end - 1])
        want += sum(lp[t - start - 1, ids[t]].item() for t in range(first, end))
    assert got[3][0] == pytest.approx(want, abs=1e-4)
    again = ScoringLM(model, tok, batch_size=1).loglikelihood_rolling(seqs[::-1])  # input order, any batch size
    assert [v for v, _ in again] == pytest.approx([v for v, _ in got[::-1]], abs=1e-5)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        lm.loglikelihood_rolling([[1], []])


def test_last_token_hidden_matches_single_sequence_forward(model, tok):
    seqs = [tok.encode(s) for s in ("one", "a longer sentence here", "mid size", "z")] + [list(range(1, 40))]
    got = ScoringLM(model, tok, batch_size=3).last_token_hidden(seqs)
    assert got.shape == (5, 3, 32) and got.dtype == np.float32
    for k, s in enumerate(seqs):
        with torch.no_grad():
            _, hidden = model(torch.tensor(s[-W:])[None], return_hidden=True)
        want = np.stack([h[0, -1].numpy() for h in hidden])
        np.testing.assert_allclose(got[k], want, atol=1e-5)
    np.testing.assert_allclose(ScoringLM(model, tok, batch_size=1).last_token_hidden(seqs), got, atol=1e-5)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        ScoringLM(model, tok).last_token_hidden([[1], []])


def test_cpu_scoring_runs_in_fp32(tok):
    torch.manual_seed(1)
    half = GPT(GPTConfig(vocab_size=256, n_layer=1, n_head=1, n_embd=16, block_size=8)).to(torch.bfloat16)
    lm = ScoringLM(half, tok)
    assert next(lm.model.parameters()).dtype == torch.float32 and not lm.model.training
