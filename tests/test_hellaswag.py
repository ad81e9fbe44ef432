"""HellaSwag: metrics against a hand computation from raw logits, both file forms, malformed items."""

import bz2
import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError, UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import hellaswag
from connectomes.evals.multiple_choice import RULES
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

ROWS = [
    {"ctx": "A man is sitting on a roof. He", "label": 3, "activity_label": "Roof shingle removal",
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."]},
    {"ctx": "Two women sit in chairs. One says: hello", "label": 0, "activity_label": "Talking",
     "endings": ["and laugh.", "reading books about the very long history of chairs and tables.", "x", "and talk quietly."]},
    {"ctx": "A dog runs", "label": 2, "activity_label": "Walking the dog",
     "endings": ["away.", "to the ball", "after a red ball across the park", "fast"]},
    {"ctx": "She slices the onion", "label": 1, "activity_label": "Cooking",
     "endings": ["thinly.", "with a sharp knife.", "and cries", "into rings on the board."]},
]


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=128))  # every fixture item fits: truncation is tested in test_scoring
    return ScoringLM(model, load_tokenizer("bytes"), batch_size=5)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_text(path, rows, compress=True):
    text = "".join(f"{r['activity_label']}: {r['ctx']}\n{r['label']}\n" + "".join(e + "\n" for e in r["endings"]) for r in rows)
    path.write_bytes(bz2.compress(text.encode()) if compress else text.encode())
    return path


def hand_scores(model, tok, ctx: str, ending: str) -> tuple[float, int]:
    """Summed log p of the ending's tokens, from one unpadded forward pass (everything fits the window)."""
    c, x = tok.encode(ctx), tok.encode(" " + ending)
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor(c + x)[None])[0].double(), dim=-1)
    return sum(logp[len(c) - 1 + j, x[j]].item() for j in range(len(x))), len(x)


def test_metrics_equal_a_hand_computation(lm, tmp_path):
    path = write_jsonl(tmp_path / "hellaswag_val.jsonl", ROWS)
    res = hellaswag.run(lm, EvalContext(options={"hellaswag.path": str(path)}, batch_size=5))
    hits = {"acc": 0, "acc_norm_token": 0, "acc_norm_char": 0}
    correct = {k: [] for k in hits}
    for r in ROWS:
        sums, toks = zip(*(hand_scores(lm.model, lm.tokenizer, r["ctx"], e) for e in r["endings"]))
        chars = [len(e) for e in r["endings"]]  # lm-evaluation-harness: the choice text, without the space
        picks = {"acc": max(range(4), key=lambda i: sums[i]),
                 "acc_norm_token": max(range(4), key=lambda i: sums[i] / toks[i]),
                 "acc_norm_char": max(range(4), key=lambda i: sums[i] / chars[i])}
        for k, p in picks.items():
            hits[k] += p == r["label"]
            correct[k].append(int(p == r["label"]))
    n = len(ROWS)
    for k, h in hits.items():
        p = h / n
        assert res[k]["value"] == p and res[k]["n"] == n
        assert res[k]["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert res["items"] == n and res["skipped_malformed"] == 0 and res["truncated_items"] == 0
    assert res["correct"] == correct and res["item_ids"] == list(range(n))
    assert res["selection"] == {"selection": "all", "n": n, "of": n}
    assert res["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert res["metrics"] == ["acc", "acc_norm_token", "acc_norm_char"] and "variant" in res


def test_summed_logprobs_equal_hand_computation(lm):
    its = [hellaswag.Item(r["ctx"], tuple(r["endings"]), r["label"], r["activity_label"], "") for r in ROWS[:2]]
    for it, s in zip(its, hellaswag.score_items(lm, its)):
        want = [hand_scores(lm.model, lm.tokenizer, it.ctx, e) for e in it.endings]
        assert s["logprob"] == pytest.approx([w[0] for w in want], abs=1e-4)
        assert s["tokens"] == [w[1] for w in want] and s["chars"] == [len(e) for e in it.endings]


def test_ties_go_to_the_first_ending():
    tied = [{"logprob": [-2.0, -2.0, -3.0, -9.0], "tokens": [2, 2, 3, 9], "chars": [4, 4, 6, 18], "context_tokens": 3}]
    first = hellaswag.metrics(tied, [0])
    second = hellaswag.metrics(tied, [1])
    assert all(first[k]["value"] == 1.0 for k in RULES) and all(second[k]["value"] == 0.0 for k in RULES)
    assert first["correct"] == {k: [1] for k in RULES} and second["correct"] == {k: [0] for k in RULES}
    assert first["acc"]["stderr"] is None  # undefined for one item


def test_both_formats_parse_to_the_same_items(tmp_path):
    a, _ = hellaswag.read_items(write_jsonl(tmp_path / "hellaswag_val.jsonl", ROWS))
    b, _ = hellaswag.read_items(write_text(tmp_path / "hellaswag_val_full.txt.bz2", ROWS))
    c, _ = hellaswag.read_items(write_text(tmp_path / "hellaswag_val_full.txt", ROWS, compress=False))
    fields = lambda xs: [(x.ctx, x.endings, x.label, x.activity_label) for x in xs]  # noqa: E731
    want = [(r["ctx"], tuple(r["endings"]), r["label"], r["activity_label"]) for r in ROWS]
    assert fields(a) == fields(b) == fields(c) == want  # a ctx containing ": " stays whole
    assert [x.where.rsplit(":", 1)[1] for x in b] == ["1", "7", "13", "19"]


@pytest.mark.parametrize("bad,why", [
    ({"ctx": "c", "endings": ["a", "b", "c"], "label": 0}, "expected 4 string endings, got 3 endings"),
    ({"ctx": "c", "endings": ["a", "b", "c", "d"], "label": 4}, "label 4 out of range"),
    ({"ctx": "c", "endings": ["a", "b", "c", "d"], "label": "two"}, "label 'two' is not an integer"),
    ({"endings": ["a", "b", "c", "d"], "label": 1}, "missing field ctx"),
    ("{not json", "not JSON"),
])
def test_malformed_jsonl_items_name_file_and_line(tmp_path, bad, why):
    good = json.dumps({"ctx": "c", "endings": ["a", "b", "c", "d"], "label": 1})
    p = tmp_path / "hellaswag_val.jsonl"
    p.write_text("\n".join([good, bad if isinstance(bad, str) else json.dumps(bad), good]) + "\n")
    with pytest.raises(DataError, match=rf"hellaswag_val\.jsonl:2: malformed HellaSwag item \({why}"):
        hellaswag.read_items(p)
    items, skipped = hellaswag.read_items(p, skip_malformed=True)
    assert len(items) == 2 and len(skipped) == 1 and skipped[0].startswith(f"{p}:2: ")


def test_malformed_text_items(tmp_path):
    p = write_text(tmp_path / "h.txt", ROWS[:3], compress=False)
    lines = p.read_text().split("\n")
    lines[7] = "seven"  # the label line of the second item (its block starts on line 7)
    p.write_text("\n".join(lines[:-3]) + "\n")  # and the last item is cut short
    with pytest.raises(DataError, match=r"h\.txt:7: malformed HellaSwag item \(label 'seven'"):
        hellaswag.read_items(p)
    items, skipped = hellaswag.read_items(p, skip_malformed=True)
    assert [i.ctx for i in items] == [ROWS[0]["ctx"]]
    assert [s.split(": ", 1)[0] for s in skipped] == [f"{p}:7", f"{p}:13"] and "ends 4 lines into" in skipped[1]


def test_skip_malformed_option_counts_in_the_result(lm, tmp_path):
    p = tmp_path / "hellaswag_val.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({**ROWS[1], "label": 9}) + "\n")
    with pytest.raises(DataError, match=r":2: "):
        hellaswag.run(lm, EvalContext(options={"hellaswag.path": str(p)}))
    res = hellaswag.run(lm, EvalContext(options={"hellaswag.path": str(p), "skip_malformed": "true"}))
    assert res["items"] == 1 and res["skipped_malformed"] == 1 and res["skipped"][0].startswith(f"{p}:2: label 9")
    with pytest.raises(UserError, match="skip_malformed='perhaps' is not a yes/no value"):
        hellaswag.run(lm, EvalContext(options={"hellaswag.path": str(p), "skip_malformed": "perhaps"}))


def test_missing_data_is_a_clear_error(lm, tmp_path):
    with pytest.raises(DataError, match=rf"no HellaSwag file in {tmp_path / 'hellaswag'}"):
        hellaswag.run(lm, EvalContext(data_root=tmp_path))
    with pytest.raises(DataError, match="hellaswag.path .* is not a file"):
        hellaswag.run(lm, EvalContext(options={"hellaswag.path": str(tmp_path / "nope.jsonl")}))


def test_real_file_has_10042_items_and_limit_is_a_seeded_uniform_sample(lm, data_root):
    path = data_root / "hellaswag" / "hellaswag_val_full.txt.bz2"
    items, skipped = hellaswag.load_items(path)
    assert len(items) == 10042 and not skipped
    assert items[0].activity_label == "Roof shingle removal" and items[0].ctx.startswith("A man is sitting on a roof.")
    assert items[0].label == 3 and items[-1].where == f"{path}:{6 * 10041 + 1}"
    res = hellaswag.run(lm, EvalContext(data_root=data_root, limit=3, sample_seed=4))
    assert res["items"] == 3 and res["data_file"] == str(path)
    assert res["item_ids"] == sorted(np.random.default_rng(4).choice(10042, 3, replace=False).tolist())
    assert res["selection"] == {"selection": "seeded uniform sample", "seed": 4, "n": 3, "of": 10042}
    assert len(res["correct"]["acc"]) == 3
    assert res["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert res["acc"]["n"] == 3
