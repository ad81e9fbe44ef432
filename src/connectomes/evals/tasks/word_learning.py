"""Word learning: each word's mean surprisal in held-out contexts, for the learning curves over a unit's kept
steps (Chang & Bergen 2022, "Word acquisition in neural language models"; docs/method.md §6).

The words: the lexical-decision word list (the words of the BLiMP and Zorro sentences, :mod:`connectomes.evals
.pseudowords`), those that occur at least ``word_learning.min_occurrences`` times in the scored tokens of the
run's val split, a split no unit trains on. An occurrence is a whitespace-separated piece of the decoded split
that, stripped of punctuation at either end, is the word exactly (case included, so "The" is not "the"). Its
surprisal is the summed -log p (nats) of the tokens that spell it (with the byte tokenizer, its bytes; a token
may also hold the space before it, as GPT-2's do; an occurrence that no run of tokens spells exactly is left
out and counted), each read in the sliding windows of :meth:`ScoringLM.token_logprobs` (every token after the
first window has at least half a window of context). A word's number is the mean over its occurrences.

Every step of every unit of a run scores the same words in the same contexts, so the per-word values form
learning curves; the report fits them (analysis.learning_curves: age of acquisition, its dependence on
frequency and length, words that never settle). Headline: the mean over words of that surprisal (lower is
better; step 0 is its untrained floor). ``limit`` keeps a seeded sample of the words, stratified by frequency
band in the run's large split (the lexical-decision bands).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict

import numpy as np

from ...core.errors import DataError
from ...data.prepare import open_prepared
from ...data.shards import read_shard
from ..context import data_path
from ..pseudowords import sentences, strip, word_list
from ..registry import Metric, Option, TaskSpec, integer, path_option
from ..sampling import sample
from ..word_frequency import split_word_counts
from .lexical_decision import band
from .reading_times import FREQ_TOKENS

MIN_OCCURRENCES = 5
TOKENS = 131_072  # half of replicate-cpu's val split: 257 words occur 5 times in it, at ~20 CPU-s a step


def token_text(tokenizer, ids: np.ndarray) -> tuple[str, np.ndarray]:
    """The split's text as its tokens spell it, piece by piece (each token decoded alone, so a byte of a
    multi-byte character reads as a replacement character: the words scored are ASCII), and each token's
    start offset in it (one more entry: the text's end)."""
    pieces = {int(t): tokenizer.decode([int(t)]) for t in np.unique(ids)}
    lengths = np.array([len(pieces[int(t)]) for t in ids], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return "".join(pieces[int(t)] for t in ids), starts


def occurrences(text: str, starts: np.ndarray, words: set[str]) -> tuple[dict[str, list[tuple[int, int]]], int]:
    """{word: [(first token, end token)]} of every occurrence of a word of ``words`` spelt exactly by a run of
    tokens (the first may also hold the one space before the word), and the occurrences left out because none is."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    unaligned = 0
    for m in re.finditer(r"\S+", text):
        w = strip(m.group())
        if w not in words:
            continue
        begin = m.start() + m.group().index(w)
        end = begin + len(w)
        i = int(np.searchsorted(starts, begin, side="right")) - 1  # the token holding the word's first character
        j = int(np.searchsorted(starts, end, side="left"))  # tokens [i, j) cover it
        if starts[j] == end and (starts[i] == begin or (starts[i] == begin - 1 and text[begin - 1] == " ")):
            out[w].append((i, j))
        else:
            unaligned += 1
    return out, unaligned


def run(lm, ctx) -> dict:
    if ctx.prepared_dir is None:
        raise DataError("word_learning needs the prepared data folder (its val split): evaluate a step folder of a run, "
                        "which records it, or pass --prepared DIR")
    words, _ = word_list(sentences(data_path(ctx, SPEC)))
    data = open_prepared(ctx.prepared_dir)
    budget = ctx.option("word_learning.tokens")
    ids = np.concatenate([read_shard(p) for p in data.split_paths("val")]).astype(np.int64)
    ids = ids[:budget] if budget else ids
    text, starts = token_text(lm.tokenizer, ids)
    found, unaligned = occurrences(text, starts, set(words))
    least = ctx.option("word_learning.min_occurrences")
    chosen = [w for w in words if len(found.get(w, ())) >= least]
    if not chosen:
        raise DataError(f"no word of the list occurs {least} times in the {len(ids):,} val tokens scored")
    counts = split_word_counts(ctx.prepared_dir, FREQ_TOKENS)
    keep, selection = sample([band(counts.counts.get(w, 0)) for w in chosen], ctx.limit_for(SPEC.name), ctx.sample_seed)
    chosen = [chosen[i] for i in keep]
    selection["unit"] = "words"
    logp = lm.token_logprobs(ids.tolist(), batched=True)  # logp[t - 1] = log p(ids[t] | ids[:t])
    surprisal, n_occ = [], []
    for w in chosen:
        spans = [(i, j) for i, j in found[w] if i > 0]  # the split's first token has no prediction
        surprisal.append(float(np.mean([-logp[i - 1:j - 1].sum() for i, j in spans])))
        n_occ.append(len(spans))
    freq = [counts.counts.get(w, 0) for w in chosen]
    return {
        "mean_surprisal": {"value": float(np.mean(surprisal)), "n": len(chosen)},
        "curves": {"items": chosen, "values": surprisal, "covariates": {
            "log10 frequency": [math.log10(c + 1) for c in freq], "length": [len(w) for w in chosen]}},
        "occurrences": n_occ, "counts": freq, "unaligned_occurrences": unaligned, "selection": selection,
        "tokens": int(len(ids)), "shard_sha256": dict(data.meta["splits"]["val"]["sha256"]),
        "frequency": {k: counts.source[k] for k in ("split", "tokens_counted", "split_sha256", "counts_sha256")},
        "words_sha256": hashlib.sha256(json.dumps(chosen).encode()).hexdigest(),
        "variant": (f"mean over a word's occurrences in the first {len(ids):,} val tokens of the summed surprisal "
                    f"(nats) of the tokens spelling it, sliding windows of {lm.max_length} (stride half); words of the "
                    f"BLiMP and Zorro sentences occurring at least {least} times; headline: mean over words"),
    }


def describe(result: dict, metric: Metric) -> str:
    sel = result.get("selection", {})
    return (f"{sel.get('n', 0):,} of {sel.get('of', 0):,} words (BLiMP and Zorro words with enough occurrences in the "
            f"val split), {sel.get('selection', '')}; {sum(result.get('occurrences', [])):,} occurrences")


SPEC = TaskSpec(
    name="word_learning", doc="per-word mean surprisal in val-split contexts (words of the BLiMP and Zorro sentences), "
                              "for learning curves and age of acquisition over the kept steps",
    run=run, data_dir=".",
    options=(path_option("word_learning", ".", "the folder holding blimp/ and zorro/ (the word list)"),
             Option("word_learning.tokens", TOKENS, "val-split tokens scored (0 = all of them)", integer(0)),
             Option("word_learning.min_occurrences", MIN_OCCURRENCES, "a word is kept when it occurs this often in "
                    "those tokens", integer(1))),
    metrics=(Metric("word surprisal (nats, mean over words)", ("mean_surprisal", "value"), higher_is_better=False,
                    figures=("steps",), tick="mean word surprisal (nats)"),),
    title="word learning", describe=describe, curves="curves",
    sampled="words of the word-learning set, a seeded sample stratified by frequency band (0 = all)",
)
