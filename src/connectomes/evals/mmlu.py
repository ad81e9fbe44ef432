"""MMLU, test split (method.md §6; reference-code-notes §9.2), in two forms.

- ``cloze`` (the paper's): "Question: {q}\\n\\nAnswer:" + " " + option text; the options are not shown.
  acc (summed log-prob), acc_norm_token (per token) and acc_norm_char (per character).
- ``5shot`` (the standard lettered form): the subject's 5 dev examples with their letters, then the
  question with its options and "Answer:"; the continuations " A" .. " D" are scored; acc.

Micro average over items, per subject, and the four category averages of the MMLU paper (Hendrycks
et al. 2021, categories.py): STEM, humanities, social sciences, other. Reads the CSVs with a header
(``question,choice0..3,answer`` with integer answers) and the original headerless CSVs with letter
answers, with the csv module (pandas' NA parsing turned option texts such as "None" into "nan" in
the reference code).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..data.shards import sha256_file
from ..errors import DataError
from .hellaswag import accuracy, choose

NAME = "mmlu"
LETTERS = "ABCD"

_SUB = {
    "STEM": ["abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
             "college_mathematics", "college_physics", "computer_security", "conceptual_physics", "electrical_engineering",
             "elementary_mathematics", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
             "high_school_mathematics", "high_school_physics", "high_school_statistics", "machine_learning"],
    "humanities": ["formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
                   "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
                   "philosophy", "prehistory", "professional_law", "world_religions"],
    "social sciences": ["econometrics", "high_school_geography", "high_school_government_and_politics",
                        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                        "human_sexuality", "professional_psychology", "public_relations", "security_studies", "sociology",
                        "us_foreign_policy"],
    "other": ["anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
              "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
              "professional_medicine", "virology"],
}
CATEGORY = {s: c for c, subs in _SUB.items() for s in subs}


@dataclass(frozen=True)
class Question:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int
    where: str


def read_csv(path: Path, subject: str, skip_malformed: bool = False) -> tuple[list[Question], list[str]]:
    items, skipped = [], []
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    start = 1 if rows and [c.strip().lower() for c in rows[0]] == ["question", "choice0", "choice1", "choice2", "choice3", "answer"] else 0
    for i, row in enumerate(rows[start:], start + 1):
        try:
            if len(row) != 6:
                raise ValueError(f"expected 6 columns (question, 4 choices, answer), got {len(row)}")
            ans = row[5].strip()
            a = LETTERS.index(ans) if ans in tuple(LETTERS) else int(ans)
            if not 0 <= a < 4:
                raise ValueError(f"answer {ans!r} out of range")
            items.append(Question(subject, row[0], tuple(row[1:5]), a, f"{path}:{i}"))
        except ValueError as e:
            if not skip_malformed:
                raise DataError(f"{path}:{i}: malformed row ({e}); fix it or pass skip_malformed") from None
            skipped.append(f"{path}:{i}: {e}")
    return items, skipped


def _subject(path: Path, split: str) -> str:
    return path.name[: -len(f"_{split}.csv")]


@lru_cache(maxsize=4)
def _load_split(folder: str, split: str, skip: bool) -> tuple[tuple[Question, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    d = Path(folder) / split
    files = sorted(d.glob(f"*_{split}.csv"))
    if not files:
        raise DataError(f"no *_{split}.csv files in {d}; put the MMLU {split} CSVs there")
    items, skipped, hashes = [], [], []
    for p in files:
        it, sk = read_csv(p, _subject(p, split), skip)
        items += it
        skipped += sk
        hashes.append((p.name, sha256_file(p)))
    return tuple(items), tuple(skipped), tuple(hashes)


def find_folder(ctx) -> Path:
    explicit = ctx.options.get("mmlu.path")
    folder = Path(explicit) if explicit else (Path(ctx.data_root) / "mmlu" if ctx.data_root else None)
    if folder is None or not (folder / "test").is_dir():
        raise DataError(f"no MMLU data at {folder}: expected {folder}/test/*_test.csv (and dev/ for 5-shot); set CONNECTOMES_DATA")
    return folder


def cloze_requests(tok, q: Question) -> list[tuple[list[int], list[int], int]]:
    c = tok.encode(f"Question: {q.question}\n\nAnswer:")
    return [(c, tok.encode(" " + ch), len(" " + ch)) for ch in q.choices]


def fewshot_prompt(q: Question, shots: list[Question]) -> str:
    def block(x: Question, answer: bool) -> str:
        opts = "".join(f"\n{L}. {ch}" for L, ch in zip(LETTERS, x.choices))
        return f"{x.question}{opts}\nAnswer:" + (f" {LETTERS[x.answer]}\n\n" if answer else "")

    head = f"The following are multiple choice questions (with answers) about {q.subject.replace('_', ' ')}.\n\n"
    return head + "".join(block(s, True) for s in shots) + block(q, False)


def _aggregate(items: list[Question], correct: list[bool]) -> dict:
    by_subj: dict[str, list[bool]] = {}
    by_cat: dict[str, list[bool]] = {}
    for q, ok in zip(items, correct):
        by_subj.setdefault(q.subject, []).append(ok)
        by_cat.setdefault(CATEGORY.get(q.subject, "other"), []).append(ok)
    return {"micro": accuracy(correct),
            "categories": {c: accuracy(v) for c, v in sorted(by_cat.items())},
            "subjects": {s: accuracy(v) for s, v in sorted(by_subj.items())}}


def run(lm, ctx) -> dict:
    folder = find_folder(ctx)
    skip = bool(ctx.options.get("skip_malformed", False))
    items, skipped, hashes = _load_split(str(folder), "test", skip)
    items = list(items)[: ctx.limit or None]
    forms = ctx.options.get("mmlu.forms", ["cloze", "5shot"])
    if isinstance(forms, str):
        forms = forms.split(",")
    tok = lm.tokenizer
    res: dict = {"items": len(items), "skipped_malformed": list(skipped), "data_sha256": dict(hashes)}
    if "cloze" in forms:
        reqs, chars = [], []
        for q in items:
            for c, x, n in cloze_requests(tok, q):
                reqs.append((c, x))
                chars.append(n)
        sc = lm.loglikelihood(reqs, desc="mmlu cloze")
        acc, tokn, charn = [], [], []
        for k, q in enumerate(items):
            rows, ch = sc[4 * k:4 * k + 4], chars[4 * k:4 * k + 4]
            acc.append(choose([r[0] for r in rows]) == q.answer)
            tokn.append(choose([r[0] / max(r[1], 1) for r in rows]) == q.answer)
            charn.append(choose([r[0] / c for r, c in zip(rows, ch)]) == q.answer)
        res["cloze"] = {"acc": _aggregate(items, acc)["micro"], "acc_norm_token": _aggregate(items, tokn)["micro"],
                        "acc_norm_char": _aggregate(items, charn)["micro"], "by": _aggregate(items, acc),
                        "variant": "zero-shot cloze: 'Question: {q}\\n\\nAnswer:' + ' ' + option text (paper)"}
    if "5shot" in forms:
        dev, dskip, dhash = _load_split(str(folder), "dev", skip)
        shots: dict[str, list[Question]] = {}
        for q in dev:
            shots.setdefault(q.subject, []).append(q)
        res["data_sha256"].update(dict(dhash))
        reqs = []
        for q in items:
            c = tok.encode(fewshot_prompt(q, shots.get(q.subject, [])[:5]))
            reqs += [(c, tok.encode(" " + L)) for L in LETTERS]
        sc = lm.loglikelihood(reqs, desc="mmlu 5-shot")
        acc = [choose([r[0] for r in sc[4 * k:4 * k + 4]]) == q.answer for k, q in enumerate(items)]
        agg = _aggregate(items, acc)
        res["5shot"] = {"acc": agg["micro"], "by": agg,
                        "variant": "5-shot lettered (dev examples), continuations ' A'..' D', contexts left-truncated to the model's window"}
    return res
