"""The Brain-Score route: brainscore-language scores an HF causal LM through its HuggingfaceSubject
(model_helpers/huggingface.py). brainscore-language pins numpy<2 and transformers<5, so it cannot live
in this environment; this test reimplements, with transformers, exactly what HuggingfaceSubject
computes on an exported folder and checks it equals our evaluations:

- reading times: for word k the subject tokenizes the words 0..k joined by spaces (AutoTokenizer,
  truncation on the left), runs the model with input_ids and attention_mask, and sums the cross-entropy
  in bits of the tokens that word k added, predicted from the logits one position earlier; a first
  context of one token gives NaN. That equals our surprisal path (evals/reading_times.word_surprisals)
  from the second word on (ours leaves the whole first word NaN);
- layer activations: a forward hook on ``transformer.h.<i>`` keeps that block's output at the last
  token: our ScoringLM.last_token_hidden layer i+1 (evals/scoring.py).
"""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="hf_modules_"))

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

transformers = pytest.importorskip("transformers")

from connectomes.io.load import load_tokenizer_for, load_model
from connectomes.evals.tasks.reading_times import word_surprisals
from connectomes.evals.scoring import ScoringLM  # noqa: E402
from connectomes.io.export import export_hf
from connectomes.model.gpt import GPTConfig

from test_hf import _step  # noqa: E402

WORDS = ("If you were to journey to the North of England, you would come to a valley that is surrounded by "
         "moors as high as mountains. It is in this valley where you would find the city of Bradford.").split()
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Colorless green ideas sleep furiously.",
             "A tree fell in the forest."]


def subject_reading_times(model, tokenizer, words):
    """Per word, the surprisal in bits HuggingfaceSubject.estimate_reading_times returns."""
    out, seen = [], 0
    for k in range(len(words)):
        enc = tokenizer(" ".join(words[:k + 1]), truncation=True, return_tensors="pt")
        overflow = enc.encodings[0].overflowing
        n_over = sum(len(o) for o in overflow) if overflow else 0
        new = enc["input_ids"][..., seen - n_over:]
        seen = enc["input_ids"].shape[-1] + n_over
        with torch.no_grad():
            logits = model(**enc).logits.squeeze(0)
        if logits.shape[0] <= 1:
            out.append(math.nan)
            continue
        predicted = logits[-new.shape[-1] - 1:-1]
        actual = new.squeeze(0)
        if actual.shape[0] == predicted.shape[0] + 1:  # the first context: its first token has no prediction
            actual = actual[1:]
        out.append(float(F.cross_entropy(predicted, actual, reduction="sum") / np.log(2)))
    return np.array(out)


def subject_last_token_layers(model, tokenizer, text, n_layer):
    """[n_layer, n_embd]: each block's output at the last token, read by forward hooks."""
    got = {}
    hooks = [model.transformer.h[i].register_forward_hook(lambda _m, _i, o, i=i: got.__setitem__(i, o.detach()))
             for i in range(n_layer)]
    with torch.no_grad():
        model(**tokenizer(text, truncation=True, return_tensors="pt"))
    for h in hooks:
        h.remove()
    return np.stack([got[i][0, -1].numpy() for i in range(n_layer)])


def _check(step, out):
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(out), truncation_side="left")
    model, info = load_model(step)
    lm = ScoringLM(model, load_tokenizer_for(info))
    ours, _ = word_surprisals(lm, WORDS)
    theirs = subject_reading_times(hf, tok, WORDS)
    assert np.isnan(ours[0])
    assert np.all(np.isfinite(theirs[1:]))
    np.testing.assert_allclose(theirs[1:], ours[1:], rtol=0, atol=1e-4)
    hidden = lm.last_token_hidden([lm.tokenizer.encode(s) for s in SENTENCES])
    for s, h in zip(SENTENCES, hidden):
        layers = subject_last_token_layers(hf, tok, s, model.config.n_layer)
        np.testing.assert_allclose(layers, h[1:], rtol=0, atol=1e-5)


def test_brainscore_subject_route_bytes(tmp_path):
    _, step = _step(tmp_path, cfg=GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=256), seed=2)
    _check(step, export_hf(step, tmp_path / "hf"))


def test_brainscore_subject_route_gpt2(tmp_path, data_root):
    cfg = GPTConfig(vocab_size=50304, n_layer=2, n_head=2, n_embd=16, block_size=128)
    _, step = _step(tmp_path, cfg=cfg, tokenizer="gpt2", seed=4, gpt2_bpe_file=str(data_root / "gpt2" / "gpt2.tiktoken"))
    _check(step, export_hf(step, tmp_path / "hf"))
