"""Minimal pairs (BLiMP, the BabyLM supplement), scored as the BLiMP paper, lm-evaluation-harness's
``blimp_*`` tasks and BabyLM's pipeline score them (docs/method.md §6).

- A pair is right when the summed log-probability of the whole good sentence, read after the
  end-of-text token with no length normalisation, exceeds the bad sentence's
  (:meth:`ScoringLM.loglikelihood_rolling`). A sentence longer than the model's window is scored in
  sliding windows, never cut.
- A tie (equal sums) counts as half a pair, and ties are counted and reported. The harness takes the
  first choice on a tie (the good sentence) and BabyLM's pipeline counts a tie as right, which lets a
  model that scores every sentence alike look good; half is what a coin would get. Each distinct
  sentence is scored once, so two identical sentences (7 BLiMP pairs) tie exactly whatever batch they
  fall in.
- A group's accuracy (a paradigm, a file) is the mean outcome of its pairs with the standard error of
  that mean (sample s.d. / sqrt(n), the harness's ``mean_stderr``). A macro average is the unweighted
  mean over groups, with standard error sqrt(sum of the groups' squared errors) / groups; the pooled
  accuracy is the mean over pairs. They are equal when every group has as many pairs.

Outcomes are 1, 0 or 0.5 per pair (``correct``, in ``item_ids`` order), so arms can be compared pair by
pair; ``margin`` is log p(good) - log p(bad) in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError
from ..core.readers import read_jsonl
from .context import data_path
from .sampling import sample

TIE_RULE = "a tie (equal summed log-probabilities) counts as half a pair; ties are counted"
VARIANT = ("summed log-probability of each whole sentence after the end-of-text token, no length normalisation; "
           "right when good > bad; sentences longer than the window scored in sliding windows (half-window "
           "overlap), never cut")


@dataclass(frozen=True)
class Pair:
    item_id: str  # "<group>:<id within the group>"
    group: str  # the paradigm (BLiMP) or the file (supplement)
    good: str
    bad: str
    info: tuple[tuple[str, str], ...] = ()  # further labels (BLiMP: field, phenomenon)


def read_records(path: Path, required: tuple[str, ...], what: str, skip_malformed: bool = False
                 ) -> tuple[list[tuple[int, dict]], list[str]]:
    """(0-based record index, record) of every well-formed record of one JSON-lines file of pairs, and the
    "file: record N: reason" of each malformed one skipped. Well-formed: ``sentence_good`` and
    ``sentence_bad`` are non-empty strings, and every field of ``required`` is present. A line that is not
    a JSON object, or a cut last line, is damage to the file and always an error (core.readers)."""
    remedy = f"fix or replace the {what} file"
    lines = read_jsonl(path, remedy=remedy)
    if lines.cut_tail:
        raise DataError(f"{path} ends in a cut line (no newline after a partial record); {remedy}")
    if not lines.records:  # scored as if the file were not there, and named only inside data_sha256
        raise DataError(f"{path} holds no {what} pairs (an empty file); {remedy}, or remove it")
    kept, skipped = [], []
    for k, rec in enumerate(lines.records):
        why = next((f"{f} is not a non-empty string" for f in ("sentence_good", "sentence_bad")
                    if not isinstance(rec.get(f), str) or not rec[f]), None)
        why = why or next((f"missing field {f}" for f in required if rec.get(f) is None), None)
        if why is None:
            kept.append((k, rec))
        elif skip_malformed:
            skipped.append(f"{path}: record {k + 1}: {why}")
        else:
            raise DataError(f"{path}: record {k + 1} is a malformed {what} pair ({why}); fix the file or pass the "
                            "option skip_malformed=true")
    return kept, skipped


def unique_ids(pairs: list[Pair], folder: Path) -> None:
    seen: set[str] = set()
    for p in pairs:
        if p.item_id in seen:
            raise DataError(f"{folder}: two pairs share the id {p.item_id!r}; each pair's id must be unique")
        seen.add(p.item_id)


def score_pairs(lm, pairs: list[Pair], desc: str | None = None) -> list[tuple[tuple[float, int], tuple[float, int]]]:
    """Per pair ((log p(good) in nats, its tokens), (log p(bad), its tokens)); each distinct sentence is
    scored once, in batches sorted by length."""
    tok = lm.tokenizer
    index: dict[str, int] = {}
    for p in pairs:
        index.setdefault(p.good, len(index))
        index.setdefault(p.bad, len(index))
    scored = lm.loglikelihood_rolling([tok.encode(s) for s in index], desc=desc)
    return [(scored[index[p.good]], scored[index[p.bad]]) for p in pairs]


def outcome(good: float, bad: float) -> float:
    return 1.0 if good > bad else 0.5 if good == bad else 0.0


def summary(outcomes: list[float]) -> dict:
    """Accuracy (mean outcome), its standard error, n and ties of one set of pairs."""
    n = len(outcomes)
    mean = sum(outcomes) / n if n else None
    se = math.sqrt(sum((x - mean) ** 2 for x in outcomes) / (n - 1) / n) if n > 1 else None
    return {"value": mean, "stderr": se, "n": n, "ties": sum(x == 0.5 for x in outcomes)}


def by_group(labels: list[str], outcomes: list[float]) -> dict[str, dict]:
    """{group: summary} in sorted group order."""
    members: dict[str, list[float]] = {}
    for g, x in zip(labels, outcomes):
        members.setdefault(g, []).append(x)
    return {g: summary(members[g]) for g in sorted(members)}


def macro(groups: dict[str, dict]) -> dict:
    """The unweighted mean of the groups' accuracies, its standard error, pairs, groups and ties."""
    k = len(groups)
    values = [g["value"] for g in groups.values()]
    ses = [g["stderr"] for g in groups.values()]
    se = math.sqrt(sum(s * s for s in ses)) / k if k and all(s is not None for s in ses) else None
    return {"value": sum(values) / k if k else None, "stderr": se, "n": sum(g["n"] for g in groups.values()),
            "groups": k, "ties": sum(g["ties"] for g in groups.values())}


def run_pairs(lm, pairs: list[Pair], desc: str | None = None) -> dict:
    """Outcomes of every pair and the per-group accuracies, macro-averaged and pooled."""
    scored = score_pairs(lm, pairs, desc=desc)
    good, bad = [g for (g, _), _ in scored], [b for _, (b, _) in scored]
    outcomes = [outcome(g, b) for g, b in zip(good, bad)]
    groups = by_group([p.group for p in pairs], outcomes)
    windowed = sum(n > lm.max_length for pair in scored for _, n in pair)  # sentences read in more than one window
    return {"macro": macro(groups), "pooled": summary(outcomes), "groups": groups,
            "ties": sum(x == 0.5 for x in outcomes), "item_ids": [p.item_id for p in pairs],
            "outcomes": [int(x) if x != 0.5 else x for x in outcomes],
            "margin": [g - b for g, b in zip(good, bad)], "windowed_sentences": windowed,
            "tie_rule": TIE_RULE, "variant": VARIANT}


def score_task(lm, ctx, spec, load, what: str) -> tuple[list[Pair], dict, dict]:
    """A minimal-pair task's run: its pairs read from its data folder (``load(folder, skip_malformed)`` ->
    pairs, skipped records, file hashes), the configured sample drawn (stratified by group), scored.
    Returns (the sampled pairs, :func:`run_pairs`' record, the fields every minimal-pair result carries)."""
    folder = data_path(ctx, spec)
    pairs, skipped, hashes = load(folder, ctx.option("skip_malformed"))
    if not pairs:
        raise DataError(f"{folder} holds no {what} pairs to evaluate")
    ids, selection = sample([p.group for p in pairs], ctx.limit_for(spec.name), ctx.sample_seed)
    selection["unit"] = "pairs"
    pairs = [pairs[i] for i in ids]
    scored = run_pairs(lm, pairs, desc=spec.name)
    common = {"ties": scored["ties"], "items": len(pairs), "item_ids": scored["item_ids"], "margin": scored["margin"],
              "selection": selection, "windowed_sentences": scored["windowed_sentences"], "tie_rule": scored["tie_rule"],
              "data_dir": str(folder), "data_sha256": hashes, "skipped_malformed": len(skipped), "skipped": skipped}
    return pairs, scored, common
