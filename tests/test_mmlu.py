"""MMLU: both CSV formats, malformed rows, the two prompt forms against hand computations, real counts."""

import math
from pathlib import Path
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError, UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import mmlu
from connectomes.evals.sampling import sample
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

SMALL_DATA = Path(__file__).parent / "fixtures" / "data"  # a few real files: tests that need little real data
HEADER = "question,choice0,choice1,choice2,choice3,answer\n"
TEST = {  # two STEM subjects and one humanities subject
    "abstract_algebra": ['"What is 2+2?",three,four,five,six,1', '"Order of Z_4?",1,2,4,8,2'],
    "astronomy": ['"Closest star?",Sun,Vega,Sirius,Rigel,0'],
    "philosophy": ['"Who wrote the Republic?",Plato,Hume,Kant,Mill,0', '"Cogito author?",Locke,Descartes,Kant,Hume,1'],
}
DEV = {s: [f'"Example {k} of {s}?",a{k},b{k},c{k},d{k},{k % 4}' for k in range(6)] for s in TEST}


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=96))
    return ScoringLM(model, load_tokenizer("bytes"), batch_size=7)


@pytest.fixture
def folder(tmp_path):
    for split, rows in (("test", TEST), ("dev", DEV)):
        (tmp_path / split).mkdir()
        for subject, lines in rows.items():
            (tmp_path / split / f"{subject}_{split}.csv").write_text(HEADER + "\n".join(lines) + "\n")
    return tmp_path


def hand_sum(model, window, context: list[int], cont: list[int]) -> tuple[float, int]:
    """Summed log p of ``cont`` after ``context`` (left-truncated to the window), one unpadded pass."""
    ids = (context + cont)[-(window + 1):]
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor(ids[:-1])[None])[0].double(), dim=-1)
    start = len(ids) - len(cont)
    return sum(logp[t - 1, ids[t]].item() for t in range(start, len(ids))), len(cont)


def first_max(xs):
    return max(range(len(xs)), key=lambda i: xs[i])


def test_cloze_equals_hand_computation(lm, folder):
    res = mmlu.run(lm, EvalContext(options={"mmlu.path": str(folder), "mmlu.forms": ["cloze"]}))
    tok = lm.tokenizer
    outcomes = {"acc": [], "acc_norm_token": [], "acc_norm_char": []}
    subjects = []
    for subject, lines in sorted(TEST.items()):
        for q in mmlu.read_csv(folder / "test" / f"{subject}_test.csv", subject)[0]:
            c = tok.encode(f"Question: {q.question}\n\nAnswer:")
            sums, ns = zip(*(hand_sum(lm.model, lm.max_length, c, tok.encode(" " + o)) for o in q.choices))
            outcomes["acc"].append(first_max(sums) == q.answer)
            outcomes["acc_norm_token"].append(first_max([s / n for s, n in zip(sums, ns)]) == q.answer)
            outcomes["acc_norm_char"].append(first_max([s / len(o) for s, o in zip(sums, q.choices)]) == q.answer)
            subjects.append(subject)
    cloze = res["cloze"]
    for rule, ok in outcomes.items():
        assert cloze[rule]["value"] == sum(ok) / 5 and cloze[rule]["n"] == 5
        stem = [o for o, s in zip(ok, subjects) if s != "philosophy"]
        assert cloze["categories"]["STEM"][rule] == pytest.approx(
            {"value": sum(stem) / 3, "stderr": math.sqrt(sum(stem) / 3 * (1 - sum(stem) / 3) / 2), "n": 3})
        assert cloze["subjects"]["philosophy"][rule]["value"] == sum(ok[3:]) / 2
    assert list(cloze["categories"]) == ["STEM", "humanities"]
    assert [cloze["subjects"][s]["acc"]["n"] for s in sorted(TEST)] == [2, 1, 2]
    assert res["items"] == 5 and res["subjects"] == 3 and "5shot" not in res
    assert set(res["data_sha256"]) == {f"test/{s}_test.csv" for s in TEST}


def test_fewshot_prompt_is_the_standard_lettered_form():
    shots = [mmlu.Question("high_school_physics", "Q0", ("a", "b", "c", "d"), 1, "")]
    q = mmlu.Question("high_school_physics", "Q?", ("w", "x", "y", "z"), 0, "")
    assert mmlu.fewshot_context(q, shots) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Q0\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n"
        "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer:")


def test_fewshot_strips_questions_not_options_as_the_harness():
    # lm-evaluation-harness mmlu/default/_default_template_yaml: "{{question.strip()}}\nA. {{choices[0]}}..."
    q = mmlu.Question("virology", "  Q?\n", (" w", "x ", "y", "z"), 0, "")
    assert mmlu.fewshot_context(q, []).endswith("\n\nQ?\nA.  w\nB. x \nC. y\nD. z\nAnswer:")


def test_fewshot_prompt_of_a_real_item():
    # world_religions test row 70 (file line 72) and dev rows 0 and 2-3 start with a space in the CSV; the
    # fixture holds the real file's first 72 lines and the real dev file (tests/fixtures/data/README.md)
    test = [q for q in mmlu.load_split(SMALL_DATA / "mmlu", "test").questions if q.subject == "world_religions"]
    dev = [q for q in mmlu.load_split(SMALL_DATA / "mmlu", "dev").questions if q.subject == "world_religions"]
    assert test[70].question == " How many books are in the New Testament?" and test[70].where.endswith(":72")
    assert mmlu.fewshot_context(test[70], dev[:5]) == (
        "The following are multiple choice questions (with answers) about world religions.\n\n"
        "What is the sign of the covenant for Jewish males?\nA. The rainbow\nB. Circumcision\nC. A son\n"
        "D. Bar mitzvah\nAnswer: B\n\n"
        "What is the Second Gem in Buddhism?\nA. The Dharma\nB. The Sangha\nC. The Buddha\nD. The Bodhisattva\n"
        "Answer: A\n\n"
        "In which dynasty was the \"Mandate of Heaven\" developed to legitimatize the new rulers?\nA. Shang\n"
        "B. Zhou\nC. Han\nD. Xia\nAnswer: B\n\n"
        "Which Japanese government promoted a kind of national cult based on the emperor and his associations "
        "with kami?\nA. Honen\nB. Tanaka\nC. Tokugawa\nD. Meiji\nAnswer: D\n\n"
        "How can the Upanishads be characterized?\nA. Ritual texts\nB. Philosophical texts\nC. Hymns\n"
        "D. Origin stories\nAnswer: B\n\n"
        "How many books are in the New Testament?\nA. 30\nB. 29\nC. 27\nD. 47\nAnswer:")


def test_fewshot_equals_hand_computation(lm, folder):
    res = mmlu.run(lm, EvalContext(options={"mmlu.path": str(folder), "mmlu.forms": "5shot"}, limit=3))
    tok = lm.tokenizer
    dev = {s: mmlu.read_csv(folder / "dev" / f"{s}_dev.csv", s)[0] for s in TEST}
    every = [q for s in sorted(TEST) for q in mmlu.read_csv(folder / "test" / f"{s}_test.csv", s)[0]]
    ids, _ = sample([q.subject for q in every], 3, seed=0)  # one per subject
    questions = [every[i] for i in ids]
    assert res["item_ids"] == ["abstract_algebra/1", "astronomy/0", "philosophy/1"] and ids == [1, 2, 4]
    hits, truncated = [], 0
    for q in questions:
        c = tok.encode(mmlu.fewshot_context(q, dev[q.subject][:5]))  # the first 5 of the 6 dev rows
        truncated += len(c) + 2 > lm.max_length + 1
        sums = [hand_sum(lm.model, lm.max_length, c, tok.encode(" " + L))[0] for L in "ABCD"]
        hits.append(first_max(sums) == q.answer)
    assert res["5shot"]["acc"]["value"] == sum(hits) / 3 and res["5shot"]["metrics"] == ["acc"]
    assert res["5shot"]["truncated_items"] == truncated == 3  # 5 shots never fit a 96-byte window
    assert res["5shot"]["correct"] == {"acc": [int(h) for h in hits]}
    assert res["items"] == 3 and res["subjects"] == 3 and res["dev_items"] == 18 and res["5shot"]["shots_min"] == 5
    assert "cloze" not in res and len(res["data_sha256"]) == 6


def test_header_and_original_csvs_read_the_same(tmp_path):
    body = '"Q1?",None,NA,"x, y",z,{}\n"Multi\nline?",nan,N/A,"",null,{}\n'
    (tmp_path / "a.csv").write_text(HEADER + body.format(2, 0))
    (tmp_path / "b.csv").write_text(body.format("C", "A"))
    a, _ = mmlu.read_csv(tmp_path / "a.csv", "virology")
    b, _ = mmlu.read_csv(tmp_path / "b.csv", "virology")
    strip = lambda qs: [(q.subject, q.question, q.choices, q.answer) for q in qs]  # noqa: E731
    assert strip(a) == strip(b) == [("virology", "Q1?", ("None", "NA", "x, y", "z"), 2),
                                    ("virology", "Multi\nline?", ("nan", "N/A", "", "null"), 0)]
    assert [q.where.rsplit(":", 1)[1] for q in a] == ["2", "3"] and [q.where.rsplit(":", 1)[1] for q in b] == ["1", "2"]


@pytest.mark.parametrize("row,why", [
    ('"Q?",a,b,c,d,E', "answer 'E' is neither a letter"),
    ('"Q?",a,b,c,d,4', "answer 4 out of range"),
    ('"Q?",a,b,c,1', "expected 6 columns"),
    ('"Q?",a,b,c,d,', "answer '' is neither"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, why):
    p = tmp_path / "anatomy_test.csv"
    p.write_text(HEADER + '"Multi\nline",a,b,c,d,0\n' + row + "\n" + '"ok",a,b,c,d,3\n')
    with pytest.raises(DataError, match=rf"anatomy_test\.csv:4: malformed MMLU row \({why}"):
        mmlu.read_csv(p, "anatomy")
    items, skipped = mmlu.read_csv(p, "anatomy", skip_malformed=True)
    assert [q.answer for q in items] == [0, 3] and len(skipped) == 1 and skipped[0].startswith(f"{p}:4: ")


def test_skip_malformed_is_reported_by_run(lm, folder):
    p = folder / "test" / "astronomy_test.csv"
    p.write_text(p.read_text() + '"Broken?",a,b,c,d,Z\n')
    ctx = EvalContext(options={"mmlu.path": str(folder), "mmlu.forms": "cloze"})
    with pytest.raises(DataError, match=r"astronomy_test\.csv:3: "):
        mmlu.run(lm, ctx)
    ctx.options["skip_malformed"] = True
    res = mmlu.run(lm, ctx)
    assert res["items"] == 5 and res["skipped_malformed"] == 1 and res["skipped"][0].startswith(f"{p}:3: ")


def test_bad_folders_and_options(lm, folder, tmp_path):
    with pytest.raises(DataError, match=rf"no MMLU test split at {tmp_path / 'nowhere' / 'mmlu' / 'test'}"):
        mmlu.run(lm, EvalContext(data_root=tmp_path / "nowhere"))
    with pytest.raises(UserError, match="mmlu.forms='cloze,zero' must list one or more of cloze, 5shot"):
        mmlu.run(lm, EvalContext(options={"mmlu.path": str(folder), "mmlu.forms": "cloze,zero"}))
    (folder / "dev" / "astronomy_dev.csv").unlink()
    with pytest.raises(DataError, match="the dev split has no examples for astronomy"):
        mmlu.run(lm, EvalContext(options={"mmlu.path": str(folder), "mmlu.forms": "5shot"}))
    (folder / "test" / "astrology_test.csv").write_text(HEADER)
    with pytest.raises(DataError, match="'astrology' is not one of the 57 MMLU subjects"):
        mmlu.run(lm, EvalContext(options={"mmlu.path": str(folder)}))


def test_real_data_counts_and_categories(data_root):
    test = mmlu.load_split(data_root / "mmlu", "test")
    dev = mmlu.load_split(data_root / "mmlu", "dev")
    assert len(test.questions) == 14042 and len(dev.questions) == 285 and not test.skipped and not dev.skipped
    subjects = {q.subject for q in test.questions}
    assert subjects == {q.subject for q in dev.questions} == set(mmlu.CATEGORY) and len(subjects) == 57
    per_cat = {c: sum(mmlu.CATEGORY[q.subject] == c for q in test.questions) for c in mmlu.CATEGORIES}
    assert per_cat == {"STEM": 3153, "humanities": 4705, "social sciences": 3077, "other": 3107}  # the harness's groups
    # option texts that pandas would have turned into NaN survive as text
    assert sum("None" in q.choices for q in test.questions) > 0
    assert all(isinstance(c, str) for q in test.questions for c in q.choices)


def test_real_data_limit_is_a_sample_stratified_by_subject(data_root):
    questions = mmlu.load_split(data_root / "mmlu", "test").questions
    ids, how = sample([q.subject for q in questions], 570, seed=0)
    per_subject = Counter(questions[i].subject for i in ids)
    assert len(per_subject) == 57 and sum(per_subject.values()) == 570
    # proportional: professional_law holds 1534 of 14042 questions -> quota 62.27
    assert per_subject["professional_law"] == 62 and per_subject["abstract_algebra"] == 4  # 100 -> 4.06
    assert how["selection"].startswith("seeded stratified") and (how["n"], how["of"]) == (570, 14042)


def test_real_data_limit_reports_ids_selection_and_outcomes(lm, data_root):
    res = mmlu.run(lm, EvalContext(data_root=data_root, limit=4, options={"mmlu.forms": ["cloze", "5shot"]}))
    questions = mmlu.load_split(data_root / "mmlu", "test").questions
    ids, how = sample([q.subject for q in questions], 4, seed=0)
    rows = mmlu.item_rows(questions)
    assert res["items"] == 4 and res["selection"] == how
    assert res["item_ids"] == [f"{questions[i].subject}/{rows[i]}" for i in ids]
    assert res["cloze"]["acc"]["n"] == res["5shot"]["acc"]["n"] == 4 and len(res["data_sha256"]) == 114
    assert len(res["cloze"]["correct"]["acc_norm_char"]) == len(res["5shot"]["correct"]["acc"]) == 4
