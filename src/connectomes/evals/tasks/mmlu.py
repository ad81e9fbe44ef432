"""MMLU, test split (docs/method.md §6, §7), in two forms.

- ``cloze`` (the paper's): "Question: {q}\\n\\nAnswer:" then " " + option text; the options are not
  shown. ``acc``, ``acc_norm_token`` and ``acc_norm_char`` (:mod:`connectomes.evals.multiple_choice`).
- ``5shot`` (the standard lettered form, lm-evaluation-harness ``mmlu``): a subject line, the
  subject's first 5 dev examples with their letters, then the question with its lettered options and
  "Answer:", each question stripped of surrounding whitespace and the options left as they are (the
  harness's template); the continuations " A" .. " D" are scored; ``acc``. Contexts longer than the model's
  window lose their oldest tokens (the count of such items is reported).

Each form reports the micro average over items, every subject, and the four categories (item-weighted,
as the harness's groups), and per rule each item's 0/1 correctness (``correct``, in ``item_ids`` order:
"subject/row", row = 0-based index among the subject's test questions) so that arms can be compared
item by item. ``limit`` scores a seeded sample stratified by subject with proportional allocation
(:mod:`connectomes.evals.sampling`, seed ``ctx.sample_seed``); every subject is present when the limit
is at least 57.

Files: the CSVs with a header (``question,choice0..3,answer``, integer answers; the shared data
folder) and the original headerless CSVs with letter answers (Hendrycks' data.tar), named
``<subject>_<split>.csv`` under ``test/`` and ``dev/``. Read with the csv module: the reference's
pandas NA parsing turned option texts such as "None" and "NA" into "nan".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...core.errors import DataError
from ...core.integrity import sha256_file
from ..context import data_path
from ..multiple_choice import RULES, accuracy, rule_outcomes, score_choices, truncated_count
from ..registry import Metric, Option, TaskSpec, one_or_more, path_option
from ..sampling import sample
from .hellaswag import SKIP_MALFORMED

LETTERS = ("A", "B", "C", "D")
FORMS = ("cloze", "5shot")
SHOTS = 5
HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]

# Subject -> category, lm-evaluation-harness (tasks/mmlu/_generate_configs.py). Hendrycks'
# categories.py agrees on all 57 subjects except anatomy, which it files under "other" (health).
CATEGORY = {
    "abstract_algebra": "STEM", "anatomy": "STEM", "astronomy": "STEM", "college_biology": "STEM",
    "college_chemistry": "STEM", "college_computer_science": "STEM", "college_mathematics": "STEM",
    "college_physics": "STEM", "computer_security": "STEM", "conceptual_physics": "STEM",
    "electrical_engineering": "STEM", "elementary_mathematics": "STEM", "high_school_biology": "STEM",
    "high_school_chemistry": "STEM", "high_school_computer_science": "STEM", "high_school_mathematics": "STEM",
    "high_school_physics": "STEM", "high_school_statistics": "STEM", "machine_learning": "STEM",
    "formal_logic": "humanities", "high_school_european_history": "humanities", "high_school_us_history": "humanities",
    "high_school_world_history": "humanities", "international_law": "humanities", "jurisprudence": "humanities",
    "logical_fallacies": "humanities", "moral_disputes": "humanities", "moral_scenarios": "humanities",
    "philosophy": "humanities", "prehistory": "humanities", "professional_law": "humanities",
    "world_religions": "humanities",
    "econometrics": "social sciences", "high_school_geography": "social sciences",
    "high_school_government_and_politics": "social sciences", "high_school_macroeconomics": "social sciences",
    "high_school_microeconomics": "social sciences", "high_school_psychology": "social sciences",
    "human_sexuality": "social sciences", "professional_psychology": "social sciences",
    "public_relations": "social sciences", "security_studies": "social sciences", "sociology": "social sciences",
    "us_foreign_policy": "social sciences",
    "business_ethics": "other", "clinical_knowledge": "other", "college_medicine": "other", "global_facts": "other",
    "human_aging": "other", "management": "other", "marketing": "other", "medical_genetics": "other",
    "miscellaneous": "other", "nutrition": "other", "professional_accounting": "other",
    "professional_medicine": "other", "virology": "other",
}
CATEGORIES = ("STEM", "humanities", "social sciences", "other")


@dataclass(frozen=True)
class Question:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int
    where: str  # "file:line" where the row starts


def _answer(text: str) -> int:
    s = text.strip()
    if s in LETTERS:
        return LETTERS.index(s)
    try:
        a = int(s)
    except ValueError:
        raise ValueError(f"answer {text!r} is neither a letter A-D nor an integer 0-3") from None
    if not 0 <= a < 4:
        raise ValueError(f"answer {a} out of range 0-3")
    return a


def read_csv(path: Path, subject: str, skip_malformed: bool = False) -> tuple[list[Question], list[str]]:
    """Questions of one subject file (either format) and the "file:line: reason" of each skipped row."""
    items, skipped = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        start = 1  # a quoted field may span lines: a row starts one line after the previous row ended
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row:
                continue
            if line == 1 and [c.strip().lower() for c in row] == HEADER:
                continue
            try:
                if len(row) != 6:
                    raise ValueError(f"expected 6 columns (question, 4 choices, answer), got {len(row)}")
                items.append(Question(subject, row[0], tuple(row[1:5]), _answer(row[5]), f"{path}:{line}"))
            except ValueError as e:
                if not skip_malformed:
                    raise DataError(f"{path}:{line}: malformed MMLU row ({e}); fix the file or pass the option "
                                    "skip_malformed=true") from None
                skipped.append(f"{path}:{line}: {e}")
    return items, skipped


@dataclass(frozen=True)
class Split:
    questions: tuple[Question, ...]
    skipped: tuple[str, ...]
    sha256: tuple[tuple[str, str], ...]  # (split/file name, sha256), in file order


def _subject_of(path: Path, split: str) -> str:
    subject = path.name[: -len(f"_{split}.csv")]
    if subject not in CATEGORY:
        raise DataError(f"{path}: {subject!r} is not one of the 57 MMLU subjects; files must be named <subject>_{split}.csv")
    return subject


@lru_cache(maxsize=4)
def _read_split(folder: str, split: str, skip: bool, stamp: tuple) -> Split:
    d = Path(folder) / split
    questions, skipped, hashes = [], [], []
    for p in sorted(d.glob(f"*_{split}.csv")):
        qs, sk = read_csv(p, _subject_of(p, split), skip)
        questions += qs
        skipped += sk
        hashes.append((f"{split}/{p.name}", sha256_file(p)))
    return Split(tuple(questions), tuple(skipped), tuple(hashes))


def load_split(folder: Path, split: str, skip_malformed: bool = False) -> Split:
    """All subjects of one split in subject order; cached while no file in the folder changes."""
    d = Path(folder) / split
    files = sorted(d.glob(f"*_{split}.csv"))
    if not files:
        raise DataError(f"no *_{split}.csv files in {d}; put the MMLU {split} CSVs there")
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _read_split(str(folder), split, skip_malformed, stamp)


def find_folder(ctx) -> Path:
    folder = data_path(ctx, SPEC)
    if not (folder / "test").is_dir():
        raise DataError(f"no MMLU test split at {folder / 'test'}: put <subject>_test.csv files there "
                        "(and dev/ for 5-shot) or pass the option mmlu.path=DIR")
    return folder


def cloze_context(q: Question) -> str:
    return f"Question: {q.question}\n\nAnswer:"


def fewshot_context(q: Question, shots: list[Question]) -> str:
    def block(x: Question) -> str:
        # the harness's doc_to_text strips the question, not the options:
        # "{{question.strip()}}\nA. {{choices[0]}}\n...\nAnswer:" (tasks/mmlu/default/_default_template_yaml)
        options = "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, x.choices))
        return f"{x.question.strip()}{options}\nAnswer:"

    head = f"The following are multiple choice questions (with answers) about {q.subject.replace('_', ' ')}.\n\n"
    return head + "".join(f"{block(s)} {LETTERS[s.answer]}\n\n" for s in shots) + block(q)


def _breakdown(questions: list[Question], outcomes: dict[str, list[bool]]) -> dict:
    """Micro average per rule, the same per category and per subject, and each item's 0/1 outcome."""
    def group(key) -> dict:
        members: dict[str, list[int]] = {}
        for k, q in enumerate(questions):
            members.setdefault(key(q), []).append(k)
        return {g: {rule: accuracy([ok[k] for k in ks]) for rule, ok in outcomes.items()} for g, ks in members.items()}

    cats = group(lambda q: CATEGORY[q.subject])
    return {**{rule: accuracy(ok) for rule, ok in outcomes.items()},
            "categories": {c: cats[c] for c in CATEGORIES if c in cats},
            "subjects": dict(sorted(group(lambda q: q.subject).items())),
            "correct": {rule: [int(x) for x in ok] for rule, ok in outcomes.items()}}


def run_cloze(lm, questions: list[Question]) -> dict:
    scored = score_choices(lm, [(cloze_context(q), list(q.choices)) for q in questions], desc="mmlu cloze")
    res = _breakdown(questions, rule_outcomes(scored, [q.answer for q in questions]))
    res.update({"metrics": list(RULES), "truncated_items": truncated_count(scored, lm.max_length),
                "variant": "zero-shot cloze (paper): 'Question: {q}\\n\\nAnswer:' + ' ' + option text; "
                           "acc_norm_char divides by len(option text)"})
    return res


def run_fewshot(lm, questions: list[Question], dev: Split) -> dict:
    shots: dict[str, list[Question]] = {}
    for q in dev.questions:
        shots.setdefault(q.subject, []).append(q)
    missing = sorted({q.subject for q in questions} - set(shots))
    if missing:
        raise DataError(f"the dev split has no examples for {', '.join(missing)}; 5-shot needs <subject>_dev.csv for each")
    prompts = [(fewshot_context(q, shots[q.subject][:SHOTS]), list(LETTERS)) for q in questions]
    scored = score_choices(lm, prompts, desc="mmlu 5-shot")
    outcomes = rule_outcomes(scored, [q.answer for q in questions])
    res = _breakdown(questions, {"acc": outcomes["acc"]})
    res.update({"metrics": ["acc"], "truncated_items": truncated_count(scored, lm.max_length),
                "shots_min": min(len(shots[q.subject][:SHOTS]) for q in questions) if questions else 0,
                "variant": "5-shot lettered (first 5 dev examples of the subject), continuations ' A'..' D'; "
                           "contexts longer than the window lose their oldest tokens"})
    return res


def item_rows(questions) -> list[int]:
    """Each question's 0-based row among its subject's questions (the split is in subject order)."""
    seen: dict[str, int] = {}
    rows = []
    for q in questions:
        rows.append(seen.get(q.subject, 0))
        seen[q.subject] = rows[-1] + 1
    return rows


def run(lm, ctx) -> dict:
    folder = find_folder(ctx)
    skip = ctx.option("skip_malformed")
    forms = ctx.option("mmlu.forms")
    test = load_split(folder, "test", skip)
    if not test.questions:
        raise DataError(f"{folder / 'test'} holds no MMLU questions to evaluate")
    ids, selection = sample([q.subject for q in test.questions], ctx.limit_for("mmlu"), ctx.sample_seed)
    questions = [test.questions[i] for i in ids]
    rows = item_rows(test.questions)
    res: dict = {"items": len(questions), "subjects": len({q.subject for q in questions}), "forms": forms,
                 "item_ids": [f"{test.questions[i].subject}/{rows[i]}" for i in ids], "selection": selection,
                 "data_dir": str(folder), "data_sha256": dict(test.sha256)}
    skipped = list(test.skipped)
    if "cloze" in forms:
        res["cloze"] = run_cloze(lm, questions)
    if "5shot" in forms:
        dev = load_split(folder, "dev", skip)
        res["data_sha256"].update(dict(dev.sha256))
        res["dev_items"] = len(dev.questions)
        skipped += dev.skipped
        res["5shot"] = run_fewshot(lm, questions, dev)
    res.update({"skipped_malformed": len(skipped), "skipped": skipped})
    return res


SPEC = TaskSpec(
    name="mmlu", doc="MMLU test split: zero-shot cloze (paper) and 5-shot lettered", run=run, data_dir="mmlu",
    options=(path_option("mmlu", "mmlu", "folder with test/ (and dev/ for 5-shot) <subject>_<split>.csv files"),
             Option("mmlu.forms", list(FORMS), f"forms to run, comma-separated: {', '.join(FORMS)}", one_or_more(FORMS)),
             SKIP_MALFORMED),
    metrics=(Metric("MMLU cloze acc", ("cloze", "acc"), chance=0.25, figures=("accuracy",)),
             Metric("MMLU 5-shot acc", ("5shot", "acc"), chance=0.25, figures=("accuracy",))),
    title="MMLU", sampled="MMLU test items, a seeded sample stratified by subject (0 = all 14,042)", default=True,
)
