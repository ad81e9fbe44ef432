"""HellaSwag, MMLU and val_loss against independent hand computations from raw logits."""

import bz2
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectomes.data.tokenizers import load_tokenizer
from connectomes.errors import DataError, UserError
from connectomes.evals import EvalContext, parse_tasks
from connectomes.evals import hellaswag, mmlu
from connectomes.evals.runner import evaluate
from connectomes.evals.scoring import ScoringLM
from connectomes.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=48))
    return ScoringLM(model, load_tokenizer("bytes"), batch_size=16)


def hand_logprob(model, ctx: list[int], cont: list[int], window: int) -> tuple[float, int]:
    """Independent: one unpadded forward pass, left-truncated, summing log-softmax at continuation positions."""
    ids = (ctx + cont)[-(window + 1):]
    x = torch.tensor(ids[:-1])[None]
    with torch.no_grad():
        logp = F.log_softmax(model(x)[0].double(), -1)
    n = min(len(cont), len(ids) - 1)
    return sum(logp[len(ids) - 1 - n + j - 0, ids[len(ids) - n + j]].item() for j in range(n)), n


ITEMS = [
    hellaswag.Item("A man is sitting on a roof. He", ("is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                   "is holding a rubik's cube.", "starts pulling up roofing on a roof."), 3, "Roof shingle removal", "t:1"),
    hellaswag.Item("Two women sit in chairs", ("and laugh.", "reading books about the very long history of chairs.",
                   "x", "and talk quietly."), 0, "Talking", "t:7"),
]


def test_hellaswag_metrics_equal_a_hand_computation(lm):
    tok = lm.tokenizer
    scored = hellaswag.score_items(lm, ITEMS)
    got = hellaswag.metrics_from_scores(scored)
    acc = tokn = charn = 0
    for it, s in zip(ITEMS, scored):
        lps, ns, cs = [], [], []
        for e in it.endings:
            lp, n = hand_logprob(lm.model, tok.encode(it.ctx), tok.encode(" " + e), lm.max_length)
            lps.append(lp), ns.append(n), cs.append(len(" " + e))
        assert s["logprob"] == pytest.approx(lps, abs=1e-4)
        acc += int(np.argmax(lps) == it.label)
        tokn += int(np.argmax([a / b for a, b in zip(lps, ns)]) == it.label)
        charn += int(np.argmax([a / b for a, b in zip(lps, cs)]) == it.label)
    assert got["acc"]["value"] == acc / 2 and got["acc_norm_token"]["value"] == tokn / 2
    assert got["acc_norm_char"]["value"] == charn / 2


def test_results_do_not_depend_on_batch_size(lm):
    reqs = [(lm.tokenizer.encode(it.ctx), lm.tokenizer.encode(" " + e)) for it in ITEMS for e in it.endings]
    one = ScoringLM(lm.model, lm.tokenizer, batch_size=1).loglikelihood(reqs)
    many = ScoringLM(lm.model, lm.tokenizer, batch_size=16).loglikelihood(reqs)
    assert [n for _, n in one] == [n for _, n in many]
    assert [v for v, _ in one] == pytest.approx([v for v, _ in many], abs=1e-5)


def test_token_logprobs_sliding_window_scores_every_token_once(lm):
    ids = list(range(1, 131))  # longer than the 48-token window
    lp = lm.token_logprobs(ids)
    assert lp.shape == (129,) and np.isfinite(lp).all()
    short = lm.token_logprobs(ids[:40])  # inside one window: equals a plain forward pass
    with torch.no_grad():
        ref = F.log_softmax(lm.model(torch.tensor(ids[:39])[None])[0].double(), -1)
    assert short == pytest.approx([ref[t, ids[t + 1]].item() for t in range(39)], abs=1e-5)
    assert lp[:47] == pytest.approx(lm.token_logprobs(ids[:48]), abs=1e-5)


def write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_both_hellaswag_formats_parse_to_the_same_items(tmp_path):
    rows = [{"ctx": it.ctx, "endings": list(it.endings), "label": it.label, "activity_label": it.activity_label} for it in ITEMS]
    write_jsonl(tmp_path / "hellaswag_val.jsonl", rows)
    text = "".join(f"{it.activity_label}: {it.ctx}\n{it.label}\n" + "".join(e + "\n" for e in it.endings) for it in ITEMS)
    (tmp_path / "h.txt.bz2").write_bytes(bz2.compress(text.encode()))
    a, _ = hellaswag.read_jsonl(tmp_path / "hellaswag_val.jsonl")
    b, _ = hellaswag.read_text(tmp_path / "h.txt.bz2")
    strip = lambda xs: [(x.ctx, x.endings, x.label, x.activity_label) for x in xs]  # noqa: E731
    assert strip(a) == strip(b) == strip(ITEMS)


@pytest.mark.parametrize("bad,msg", [
    ({"ctx": "c", "endings": ["a", "b", "c"], "label": 0}, "expected 4 endings"),
    ({"ctx": "c", "endings": ["a", "b", "c", "d"], "label": 4}, "out of range"),
    ({"endings": ["a", "b", "c", "d"], "label": 1}, "KeyError"),
])
def test_malformed_hellaswag_rows_name_file_and_line(tmp_path, bad, msg):
    good = {"ctx": "c", "endings": ["a", "b", "c", "d"], "label": 1}
    p = tmp_path / "hellaswag_val.jsonl"
    write_jsonl(p, [good, bad, good])
    with pytest.raises(DataError, match=rf"hellaswag_val\.jsonl:2: .*{msg}"):
        hellaswag.read_jsonl(p)
    items, skipped = hellaswag.read_jsonl(p, skip_malformed=True)
    assert len(items) == 2 and len(skipped) == 1 and ":2:" in skipped[0]


def test_real_hellaswag_has_10042_items(data_root):
    items, skipped = hellaswag.load_items(data_root / "hellaswag" / "hellaswag_val_full.txt.bz2")
    assert len(items) == 10042 and not skipped
    assert all(len(i.endings) == 4 and 0 <= i.label < 4 for i in items)


def test_real_mmlu_counts(data_root):
    test, skipped, _ = mmlu._load_split(str(data_root / "mmlu"), "test", False)
    dev, _, _ = mmlu._load_split(str(data_root / "mmlu"), "dev", False)
    assert len(test) == 14042 and len(dev) == 285 and not skipped
    assert len({q.subject for q in test}) == 57 and {q.subject for q in test} == set(mmlu.CATEGORY)


def test_mmlu_header_and_original_csvs_read_the_same(tmp_path):
    (tmp_path / "a.csv").write_text('question,choice0,choice1,choice2,choice3,answer\n"Q1?",None,NA,"x, y",z,2\n')
    (tmp_path / "b.csv").write_text('"Q1?",None,NA,"x, y",z,C\n')
    a, _ = mmlu.read_csv(tmp_path / "a.csv", "s")
    b, _ = mmlu.read_csv(tmp_path / "b.csv", "s")
    assert [(q.question, q.choices, q.answer) for q in a] == [(q.question, q.choices, q.answer) for q in b] \
        == [("Q1?", ("None", "NA", "x, y", "z"), 2)]


def test_malformed_mmlu_row(tmp_path):
    (tmp_path / "a.csv").write_text('"Q1?",a,b,c,d,E\n')
    with pytest.raises(DataError, match=r"a\.csv:1: malformed row"):
        mmlu.read_csv(tmp_path / "a.csv", "s")


def test_mmlu_cloze_equals_hand_computation(lm, tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "dev").mkdir()
    rows = ['"What is 2+2?",three,four,five,six,1', '"Sky colour?",blue,green,red,black,0', '"Odd one?",cat,dog,car,cow,2']
    (tmp_path / "test" / "misc_test.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev" / "misc_dev.csv").write_text("\n".join(rows) + "\n")
    ctx = EvalContext(options={"mmlu.path": str(tmp_path), "mmlu.forms": ["cloze"]})
    res = mmlu.run(lm, ctx)
    qs, _ = mmlu.read_csv(tmp_path / "test" / "misc_test.csv", "misc")
    correct = 0
    for q in qs:
        c = lm.tokenizer.encode(f"Question: {q.question}\n\nAnswer:")
        lps = [hand_logprob(lm.model, c, lm.tokenizer.encode(" " + ch), lm.max_length)[0] for ch in q.choices]
        correct += int(np.argmax(lps) == q.answer)
    assert res["cloze"]["acc"]["value"] == pytest.approx(correct / 3)
    assert res["cloze"]["by"]["categories"]["other"]["n"] == 3


def test_fewshot_prompt_format():
    shots = [mmlu.Question("high_school_physics", "Q0", ("a", "b", "c", "d"), 1, "")]
    q = mmlu.Question("high_school_physics", "Q?", ("w", "x", "y", "z"), 0, "")
    assert mmlu.fewshot_prompt(q, shots) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Q0\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\nQ?\nA. w\nB. x\nC. y\nD. z\nAnswer:")


def test_unknown_task_is_a_clear_error():
    with pytest.raises(UserError, match="unknown evaluation task 'squad'"):
        parse_tasks("val_loss,squad")


def test_runner_reports_every_task_with_timing(lm, data_root):
    ctx = EvalContext(data_root=data_root, limit=8, batch_size=8)
    res = evaluate(lm.model, lm.tokenizer, ["hellaswag", "mmlu"], ctx)
    assert res["tasks"]["hellaswag"]["items"] == 8 and len(res["tasks"]["hellaswag"]["data_sha256"]) == 64
    assert set(res["timing_s"]) == {"hellaswag", "mmlu"}
