"""HellaSwag, validation split, zero-shot (docs/method.md §6, §7).

Each ending is scored as a continuation of the context: tokens(ctx) then tokens(" " + ending), as
the paper's code does (no activity-label prefix, no few-shot examples). The three answer rules
(``acc``, ``acc_norm_token``, ``acc_norm_char``), their tie rule and standard errors are those of
:mod:`connectomes.evals.multiple_choice`.

Two file forms give the same items:
- the original jsonl (``hellaswag_val.jsonl``: fields ``ctx``, ``endings``, ``label``, ``activity_label``);
- the preprocessed text form in the shared data folder (``hellaswag_val_full.txt[.bz2]``, 6 lines per
  item: "activity_label: ctx", label, 4 endings). Its ctx is the text after the first ": ". Its
  WikiHow items lost their "[header]"/"[title]"/"[step]" markers, so scores on it differ slightly from
  the raw jsonl's (see the data README).

``limit`` scores a seeded uniform sample of N items without replacement (:mod:`connectomes.evals.sampling`,
seed ``ctx.sample_seed``). The result lists the scored item ids (0-based index among the file's items)
and, per rule, each item's correctness (0/1, in id order) so that arms can be compared item by item.
"""

from __future__ import annotations

import bz2
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...core.errors import DataError
from ...core.integrity import sha256_file
from ..context import data_path
from ..multiple_choice import RULES, accuracy, rule_outcomes, score_choices, truncated_count
from ..registry import Metric, Option, TaskSpec, flag, path_option
from ..sampling import sample

FILES = ("hellaswag_val.jsonl", "hellaswag_val_full.txt.bz2", "hellaswag_val_full.txt")
N_ENDINGS = 4


@dataclass(frozen=True)
class Item:
    ctx: str
    endings: tuple[str, ...]
    label: int
    activity_label: str
    where: str  # "file:line" of the item's first line


class _Malformed(ValueError):
    pass


def _label(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Malformed(f"label {value!r} is not an integer")
    try:
        lab = int(value)
    except ValueError:
        raise _Malformed(f"label {value!r} is not an integer") from None
    if not 0 <= lab < N_ENDINGS:
        raise _Malformed(f"label {lab} out of range 0..{N_ENDINGS - 1}")
    return lab


def _from_json(row) -> tuple[str, tuple[str, ...], int, str]:
    if not isinstance(row, dict):
        raise _Malformed("line is not a JSON object")
    missing = [k for k in ("ctx", "endings", "label") if k not in row]
    if missing:
        raise _Malformed(f"missing field {', '.join(missing)}")
    ctx, endings = row["ctx"], row["endings"]
    if not isinstance(ctx, str):
        raise _Malformed("ctx is not a string")
    if not isinstance(endings, list) or len(endings) != N_ENDINGS or not all(isinstance(e, str) for e in endings):
        got = f"{len(endings)} endings" if isinstance(endings, list) else repr(endings)
        raise _Malformed(f"expected {N_ENDINGS} string endings, got {got}")
    return ctx, tuple(endings), _label(row["label"]), str(row.get("activity_label", ""))


def _reject(path: Path, line: int, why: str, skip: bool, skipped: list[str]) -> None:
    where = f"{path}:{line}"
    if not skip:
        raise DataError(f"{where}: malformed HellaSwag item ({why}); fix the file or pass the option skip_malformed=true")
    skipped.append(f"{where}: {why}")


def read_jsonl(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """Items and the "file:line: reason" of each skipped malformed line."""
    items, skipped = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ctx, endings, label, activity = _from_json(json.loads(line))
            except json.JSONDecodeError as e:
                _reject(path, i, f"not JSON: {e.msg}", skip_malformed, skipped)
                continue
            except _Malformed as e:
                _reject(path, i, str(e), skip_malformed, skipped)
                continue
            items.append(Item(ctx, endings, label, activity, f"{path}:{i}"))
    return items, skipped


def read_text(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """The preprocessed form: 6 lines per item ("activity_label: ctx", label, 4 endings)."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    per = 2 + N_ENDINGS
    items, skipped = [], []
    for k in range(0, len(lines), per):
        first = k + 1
        block = lines[k:k + per]
        if len(block) < per:
            _reject(path, first, f"the file ends {len(block)} lines into an item of {per}", skip_malformed, skipped)
            break
        head, label, *endings = block
        activity, sep, ctx = head.partition(": ")
        try:
            if not sep:
                raise _Malformed("first line has no 'activity_label: ' prefix")
            items.append(Item(ctx, tuple(endings), _label(label.strip()), activity, f"{path}:{first}"))
        except _Malformed as e:
            _reject(path, first, str(e), skip_malformed, skipped)
    return items, skipped


def read_items(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """Either form, chosen by the file name."""
    path = Path(path)
    reader = read_jsonl if path.name.endswith(".jsonl") else read_text
    return reader(path, skip_malformed)


def find_file(ctx) -> Path:
    """The hellaswag.path file, else the first of FILES in that folder (default <data root>/hellaswag)."""
    p = data_path(ctx, SPEC)
    if p.is_file():
        return p
    for name in FILES:
        if (p / name).is_file():
            return p / name
    if ctx.option("hellaswag.path"):
        raise DataError(f"hellaswag.path {p} is not a file; point it at hellaswag_val.jsonl or hellaswag_val_full.txt.bz2")
    raise DataError(f"no HellaSwag file in {p} (looked for {', '.join(FILES)}); "
                    "put the validation set there or pass the option hellaswag.path=FILE")


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, skip: bool) -> tuple[tuple[Item, ...], tuple[str, ...]]:
    items, skipped = read_items(Path(path), skip)
    return tuple(items), tuple(skipped)


def load_items(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """``read_items`` cached per (file, modification time): evaluating many steps parses once."""
    path = Path(path)
    items, skipped = _cached(str(path), path.stat().st_mtime_ns, skip_malformed)
    return list(items), list(skipped)


def score_items(lm, items: list[Item], desc: str | None = None) -> list[dict]:
    """Per item: summed log-probs, token counts and character counts of the four endings."""
    return score_choices(lm, [(it.ctx, list(it.endings)) for it in items], desc=desc)


def metrics(scored: list[dict], labels: list[int]) -> dict:
    """Accuracy per rule, and ``correct``: per rule the 0/1 outcome of each item, in item order."""
    outcomes = rule_outcomes(scored, labels)
    res = {rule: accuracy(ok) for rule, ok in outcomes.items()}
    res["correct"] = {rule: [int(x) for x in ok] for rule, ok in outcomes.items()}
    return res


def run(lm, ctx) -> dict:
    path = find_file(ctx)
    items, skipped = load_items(path, ctx.option("skip_malformed"))
    if not items:
        raise DataError(f"{path} holds no HellaSwag items to evaluate")
    ids, selection = sample([0] * len(items), ctx.limit_for("hellaswag"), ctx.sample_seed)
    items = [items[i] for i in ids]
    scored = score_items(lm, items, desc="hellaswag")
    res = metrics(scored, [it.label for it in items])
    res.update({
        "items": len(items),
        "item_ids": ids,
        "selection": selection,
        "truncated_items": truncated_count(scored, lm.max_length),
        "metrics": list(RULES),
        "variant": "validation, zero-shot; context = ctx, continuation = ' ' + ending (paper's code); "
                   "acc = summed log-prob, acc_norm_token = mean per token (paper's code), "
                   "acc_norm_char = summed / len(ending) in characters (lm-evaluation-harness acc_norm); "
                   "ties to the first ending; stderr = sqrt(p(1-p)/(n-1))",
        "data_file": str(path),
        "data_sha256": sha256_file(path),
        "skipped_malformed": len(skipped),
        "skipped": skipped,
    })
    return res


CHANCE = 0.25  # four endings

SKIP_MALFORMED = Option("skip_malformed", False, "skip (and list) malformed items instead of stopping at the first", flag)

SPEC = TaskSpec(
    name="hellaswag", doc="HellaSwag validation, zero-shot, 4 endings", run=run, data_dir="hellaswag",
    options=(path_option("hellaswag", "hellaswag", "hellaswag_val.jsonl or hellaswag_val_full.txt.bz2, or their folder"),
             SKIP_MALFORMED),
    metrics=tuple(Metric(f"HellaSwag {rule}", (rule,), chance=CHANCE, figures=("accuracy",))
                  for rule in ("acc_norm_token", "acc", "acc_norm_char")),
    title="HellaSwag", sampled="HellaSwag items, a seeded uniform sample (0 = all 10,042)", default=True,
)
