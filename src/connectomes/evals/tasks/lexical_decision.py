"""Lexical decision: a real word against a pseudo-word matched to it (Bunzeck & Zarrieß 2025's test of
lexical knowledge in small character-level models; docs/method.md §6).

Items (:mod:`connectomes.evals.pseudowords`): the words of the BLiMP and Zorro sentences of the data folder,
each with a Wuggy-style pseudo-word of the same length and letter-bigram statistics that is no word of the
list, of those sentences or of any corpus under the data folder. They are generated at evaluation time from
the data folder, deterministically (``lexical_decision.seed``); the result records the items' sha256.

Scoring: each item is read as a whole word after a space, the text `` word `` (the space after it is
scored too, so the word must end there and a real word's prefix does not pass for it), after the end-of-text
token, by BLiMP's minimal-pair code (:mod:`connectomes.evals.minimal_pairs`): the model is right when the real
word's summed log-probability is higher; a tie counts as half.

Frequency bands: each word's count in the run's own large split (:mod:`connectomes.evals.word_frequency`, the
same count as the reading-time baseline's), banded 0, 1-9, 10-99, 100-999, 1000+. A pair whose pseudo-word
occurs in that split is left out (counted in ``excluded_pseudo_in_split``; zero when the run's corpus is one of
the data folder's), so no pseudo-word is a word of the run's corpora. Headline: the pooled accuracy over the
pairs scored; per band beside it. Item ids are the real words. ``limit`` scores a seeded sample stratified by
band (proportional allocation, every band present).
"""

from __future__ import annotations

from ...core.errors import DataError
from ..context import data_path
from ..minimal_pairs import Pair, macro, run_pairs
from ..pseudowords import items
from ..registry import Breakdown, Metric, Option, TaskSpec, integer, path_option
from ..sampling import sample
from ..word_frequency import split_word_counts
from .reading_times import FREQ_TOKENS

BANDS = ((1000, "1000+"), (100, "100-999"), (10, "10-99"), (1, "1-9"), (0, "0"))  # (lowest count, label)


def band(count: int) -> str:
    return next(label for low, label in BANDS if count >= low)


def text(word: str) -> str:
    """How an item is read: the word after a space, ending at the next space."""
    return f" {word} "


def run(lm, ctx) -> dict:
    if ctx.prepared_dir is None:
        raise DataError("lexical_decision needs the prepared data folder for its frequency bands: evaluate a step "
                        "folder of a run, which records it, or pass --prepared DIR")
    folder = data_path(ctx, SPEC)
    made = items(folder, ctx.option("lexical_decision.seed"))
    counts = split_word_counts(ctx.prepared_dir, FREQ_TOKENS)
    kept = [(w, p) for w, p in made["pairs"] if p not in counts.counts]
    bands = [band(counts.counts.get(w, 0)) for w, _ in kept]
    ids, selection = sample(bands, ctx.limit_for(SPEC.name), ctx.sample_seed)
    selection["unit"] = "pairs"
    pairs = [Pair(kept[i][0], bands[i], text(kept[i][0]), text(kept[i][1])) for i in ids]
    scored = run_pairs(lm, pairs, desc=SPEC.name)
    population = {b: bands.count(b) for b in sorted(set(bands))}
    groups = scored["groups"]
    for b, g in groups.items():
        g["pairs_in_band"] = population[b]
    by_band = macro(groups)
    by_band["bands"] = by_band.pop("groups")
    return {
        "acc": scored["pooled"], "acc_macro_bands": by_band, "bands": groups,
        "correct": {"acc": scored["outcomes"]}, "item_ids": scored["item_ids"], "margin": scored["margin"],
        "pseudowords": [p.bad.strip() for p in pairs], "counts": [counts.counts.get(p.item_id, 0) for p in pairs],
        "ties": scored["ties"], "items": len(pairs), "selection": selection, "tie_rule": scored["tie_rule"],
        "windowed_sentences": scored["windowed_sentences"],
        "variant": ("summed log-probability of ' word ' (the word after a space, and the space after it) after the "
                    "end-of-text token; right when the real word's is higher; headline: pooled over pairs"),
        "data_dir": str(folder), "items_sha256": made["sha256"], "generator": {
            k: made[k] for k in ("method", "seed", "tolerance_bits", "words")} | {"pairs": len(made["pairs"]),
                                                                                  "unmatched": len(made["unmatched"])},
        "excluded_pseudo_in_split": len(made["pairs"]) - len(kept),
        "frequency": {k: counts.source[k] for k in ("split", "tokens_counted", "split_sha256", "counts_sha256")},
    }


SPEC = TaskSpec(
    name="lexical_decision", doc="real word vs matched pseudo-word (Wuggy-style), each read after a space: accuracy "
                                 "pooled and per frequency band of the run's large split",
    run=run, data_dir=".",
    options=(path_option("lexical_decision", ".", "the folder holding blimp/ and zorro/ (the word list) and corpus/ "
                                                  "(words the pseudo-words must not be)"),
             Option("lexical_decision.seed", 0, "seed of the pseudo-word generator", integer(0))),
    metrics=(Metric("lexical decision acc", ("acc",), chance=0.5, figures=("accuracy",),
                    tick="lexical decision accuracy"),),
    title="lexical decision",
    sampled="lexical-decision pairs, a seeded sample stratified by frequency band (0 = all, about 2,100)",
    breakdowns=(Breakdown("bands", "frequency band", doc="the pairs right among words of that many occurrences in the "
                          "run's large split (a tie counts half); overall: pooled over pairs"),),
)
