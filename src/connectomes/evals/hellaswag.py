"""HellaSwag, validation split, zero-shot (method.md §6; reference-code-notes §9.1).

Each ending is scored as a continuation of the context: tokens(ctx) then tokens(" " + ending), as
the paper's code does. Three rules pick the answer:
- ``acc``            highest summed log-probability of the ending;
- ``acc_norm_token`` highest mean log-probability per ending token (the paper's code, llm.c style);
- ``acc_norm_char``  highest summed log-probability / characters of " " + ending (lm-evaluation-harness).
Ties go to the first ending. Standard errors are binomial: sqrt(p(1-p)/(n-1)).

Reads the original jsonl (``ctx``, ``endings``, ``label``, ``activity_label``) and the preprocessed
text form (6 lines per item, ``hellaswag_val_full.txt[.bz2]``).
"""

from __future__ import annotations

import bz2
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..data.shards import sha256_file
from ..errors import DataError

NAME = "hellaswag"
FILES = ("hellaswag_val.jsonl", "hellaswag_val_full.txt.bz2", "hellaswag_val_full.txt")


@dataclass(frozen=True)
class Item:
    ctx: str
    endings: tuple[str, ...]
    label: int
    activity_label: str
    where: str  # file:line of the item's first line


def _bad(path: Path, line: int, msg: str) -> DataError:
    return DataError(f"{path}:{line}: {msg}")


def read_jsonl(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    items, skipped = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ctx, endings, label = row["ctx"], row["endings"], int(row["label"])
                if not isinstance(endings, list) or len(endings) != 4:
                    raise ValueError(f"expected 4 endings, got {len(endings) if isinstance(endings, list) else endings!r}")
                if not 0 <= label < 4:
                    raise ValueError(f"label {label} out of range 0..3")
                items.append(Item(ctx, tuple(endings), label, row.get("activity_label", ""), f"{path}:{i}"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                msg = f"malformed item ({type(e).__name__}: {e})"
                if not skip_malformed:
                    raise _bad(path, i, msg + "; fix it or pass skip_malformed") from None
                skipped.append(f"{path}:{i}: {msg}")
    return items, skipped


def read_text(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    """The preprocessed form: 6 lines per item ("activity_label: ctx", label, 4 endings)."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    items, skipped = [], []
    if len(lines) % 6:
        msg = f"has {len(lines)} lines, not a multiple of 6 (1 context + 1 label + 4 endings per item)"
        if not skip_malformed:
            raise DataError(f"{path} {msg}; the file is damaged")
        skipped.append(f"{path}: {msg}; trailing {len(lines) % 6} lines ignored")
    for k in range(len(lines) // 6):
        first = k * 6 + 1
        head, label, *endings = lines[k * 6:k * 6 + 6]
        try:
            lab = int(label)
            if not 0 <= lab < 4:
                raise ValueError(f"label {lab} out of range 0..3")
            activity, sep, ctx = head.partition(": ")
            if not sep:
                raise ValueError("first line has no 'activity_label: ' prefix")
            items.append(Item(ctx, tuple(endings), lab, activity, f"{path}:{first}"))
        except ValueError as e:
            if not skip_malformed:
                raise _bad(path, first, f"malformed item ({e}); fix it or pass skip_malformed") from None
            skipped.append(f"{path}:{first}: {e}")
    return items, skipped


def find_file(ctx) -> Path:
    explicit = ctx.options.get("hellaswag.path")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise DataError(f"hellaswag.path {p} does not exist")
        return p
    if ctx.data_root is None:
        raise DataError("no data folder for HellaSwag: set CONNECTOMES_DATA or pass --data-root")
    folder = Path(ctx.data_root) / "hellaswag"
    for name in FILES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no HellaSwag file in {folder} (looked for {', '.join(FILES)}); put the validation set there")


@lru_cache(maxsize=4)
def _load(path: str, mtime: float, skip: bool) -> tuple[tuple[Item, ...], tuple[str, ...]]:
    p = Path(path)
    items, skipped = read_jsonl(p, skip) if p.name.endswith(".jsonl") else read_text(p, skip)
    return tuple(items), tuple(skipped)


def load_items(path: Path, skip_malformed: bool = False) -> tuple[list[Item], list[str]]:
    items, skipped = _load(str(path), path.stat().st_mtime, skip_malformed)
    return list(items), list(skipped)


def accuracy(correct: list[bool]) -> dict:
    n = len(correct)
    p = sum(correct) / n if n else float("nan")
    se = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")
    return {"value": p, "stderr": se, "n": n}


def choose(scores: list[float]) -> int:
    """Index of the highest score, the first one on ties."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def score_items(lm, items: list[Item], desc: str | None = None) -> list[dict]:
    """Per item: summed log-probs, token counts and character counts of the four endings."""
    tok = lm.tokenizer
    requests, meta = [], []
    for it in items:
        c = tok.encode(it.ctx)
        for e in it.endings:
            cont = " " + e
            requests.append((c, tok.encode(cont)))
            meta.append(len(cont))
    scored = lm.loglikelihood(requests, desc=desc)
    out = []
    for k, it in enumerate(items):
        rows = scored[4 * k:4 * k + 4]
        out.append({"label": it.label, "logprob": [r[0] for r in rows], "tokens": [r[1] for r in rows],
                    "chars": meta[4 * k:4 * k + 4]})
    return out


def metrics_from_scores(scored: list[dict]) -> dict:
    acc = [choose(s["logprob"]) == s["label"] for s in scored]
    tokn = [choose([lp / max(n, 1) for lp, n in zip(s["logprob"], s["tokens"])]) == s["label"] for s in scored]
    charn = [choose([lp / c for lp, c in zip(s["logprob"], s["chars"])]) == s["label"] for s in scored]
    return {"acc": accuracy(acc), "acc_norm_token": accuracy(tokn), "acc_norm_char": accuracy(charn)}


def run(lm, ctx) -> dict:
    path = find_file(ctx)
    items, skipped = load_items(path, bool(ctx.options.get("skip_malformed", False)))
    if ctx.limit:
        items = items[:ctx.limit]
    scored = score_items(lm, items, desc="hellaswag")
    res = metrics_from_scores(scored)
    res.update({
        "items": len(items),
        "variant": "validation, zero-shot; context = ctx, continuation = ' ' + ending; acc = summed log-prob, "
                   "acc_norm_token = mean per token (paper's code), acc_norm_char = per character (lm-eval-harness)",
        "data_file": str(path),
        "data_sha256": sha256_file(path),
        "skipped_malformed": skipped,
    })
    return res
