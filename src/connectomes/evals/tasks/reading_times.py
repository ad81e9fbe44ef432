"""reading_times: word surprisal vs self-paced reading times on Natural Stories (docs/method.md §6, §7).

Target: ``meanItemRT`` per word (``processed_wordinfo.tsv`` joined with ``all_stories.tok``; the
option ``reading_times.file`` picks another wordinfo file of the folder, e.g. the 2016 one).

Each story is one context: its words joined by single spaces, tokenised with offsets, scored with
``lm.token_logprobs`` (a sliding window with overlap past the context length). Each token belongs to
the word holding its character midpoint; a midpoint on the space between two words goes to the
following word, so a token made only of that space (bytes) or a leading-space token (" word", GPT-2)
counts for the word it introduces, and a token ending in the space ("word ") counts for its word.
Word surprisal = sum of its tokens' surprisals, in bits. The story's first token has no surprisal,
so the word holding it is dropped, as is a word left without tokens (a token spanning two words goes
to one of them); both are counted.

Metrics: Pearson r over all words (the paper, variant ``all_words``) and without sentence-initial
words (``no_sentence_initial``, Brain-Score's exclusion). A word is sentence-initial when it starts a
story, or when the previous word ends in . ? or ! (possibly followed by closing quotes or brackets,
as in ``mountains."``) - unless that previous word closes a quotation and this word starts with a
lower-case letter, which continues the sentence (``'Is it?' he asked``). Natural Stories has no
abbreviations with a full stop, so no further rule is needed.

Above a baseline (``baseline_regression``, revision 2 of this task): the gain in explained variance ΔR²
(and in held-out log-likelihood per word, nats) of a linear regression of meanItemRT on word length,
log2 word frequency, the previous word's length and log2 frequency (spill-over), and both words'
surprisals, over the same regression without the surprisals; ordinary least squares, leave-one-story-out
cross-validation with the held-out predictions pooled (evals.regression). Word length is the word's
characters as displayed (punctuation included, as the reader saw it); frequencies are add-one smoothed
counts of the study's own large split (evals.word_frequency; the first ``reading_times.freq_tokens``
tokens), recorded with their source. Words enter when they and the previous word of the same story have
a surprisal (a story's first two words do not). A model that knows only word length and frequency, as an
untrained byte model does, sits near 0.

The counts need the prepared data folder: the run's, which a study's evaluation and a step folder of a
run record; ``connectomes eval --prepared DIR`` names one for weights that do not. Without one the r above
is still computed and ``baseline_regression`` records why it was not, with a note on stderr.

Every word of the corpus is scored whatever ``ctx.limit``: the item limit applies to the accuracy tasks
only, since a correlation over another word set would be another measurement.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
from pathlib import Path

import numpy as np

from ...core.atomic import atomic_write_text, make_dirs
from ...core.progress import iterate
from ..alignment_data import NATURAL_STORIES_WORDINFO, StoryWord, load_natural_stories
from ..context import data_path
from ..regression import compare_nested
from ..registry import Metric, Option, TaskSpec, integer, path_option
from ..word_frequency import split_word_counts

_SENTENCE_END = re.compile(r"[.?!][\"'’”)\]]*$")
_CLOSING_QUOTE = re.compile(r"[\"'’”]$")
LN2 = math.log(2)


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text with single spaces between words, and each word's [start, end) character span."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def assign_tokens(token_spans: list[tuple[int, int]], word_spans: list[tuple[int, int]]) -> list[int]:
    """Index of the word each token belongs to (midpoint rule, module docstring); spans sorted, non-overlapping."""
    starts = [s for s, _ in word_spans]
    owners = []
    for s, e in token_spans:
        mid = (s + e) / 2
        w = max(0, bisect.bisect_right(starts, mid) - 1)
        if mid >= word_spans[w][1] and w + 1 < len(word_spans):  # on the space after word w
            w += 1
        owners.append(w)
    return owners


def word_surprisals(lm, words: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """Surprisal in bits of each word read in one context (NaN: the word holds the context's first
    token or no token), and the token indices of each word."""
    text, spans = join_words(words)
    ids, token_spans = lm.tokenizer.encode_with_offsets(text)
    logprobs = lm.token_logprobs(ids)  # logprobs[t - 1] = ln p(ids[t] | ids[:t])
    bits = np.zeros(len(words))
    tokens_of: list[list[int]] = [[] for _ in words]
    for t, w in enumerate(assign_tokens(token_spans, spans)):
        tokens_of[w].append(t)
        bits[w] += math.nan if t == 0 else -logprobs[t - 1] / LN2
    bits[np.array([not ts for ts in tokens_of], dtype=bool)] = math.nan
    return bits, tokens_of


def sentence_initial(words: list[str]) -> list[bool]:
    """Whether each word of one story starts a sentence (rule in the module docstring)."""
    out = []
    for i, w in enumerate(words):
        if i == 0:
            out.append(True)
            continue
        prev = words[i - 1]
        attribution = bool(_CLOSING_QUOTE.search(prev)) and w[:1].islower()
        out.append(bool(_SENTENCE_END.search(prev)) and not attribution)
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> dict:
    """Pearson r over the pairs where both are finite, with that count."""
    from scipy.stats import pearsonr

    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return {"r": math.nan, "p": math.nan, "n": n}
    r, p = pearsonr(x[ok], y[ok])
    return {"r": float(r), "p": float(p), "n": n}


def score_stories(lm, words: list[StoryWord]) -> list[dict]:
    """One row per word: story, zone, word, surprisal_bits, rt, sentence_initial, no_tokens."""
    rows = []
    stories = sorted({w.story for w in words})
    for story in iterate(stories, "reading_times", "story", disable=len(stories) < 2, inner=True):
        ws = [w for w in words if w.story == story]
        text = [w.word for w in ws]
        bits, tokens_of = word_surprisals(lm, text)
        for w, b, init, toks in zip(ws, bits, sentence_initial(text), tokens_of):
            rows.append({"story": w.story, "zone": w.zone, "word": w.word, "surprisal_bits": float(b), "rt": w.rt,
                         "sentence_initial": init, "no_tokens": not toks})
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    """Per-word TSV for plots, written atomically (core.atomic: whole or not at all, never through a link)."""
    lines = ["story\tzone\tword\tsurprisal_bits\trt_ms\tsentence_initial\n"]
    lines += [f"{r['story']}\t{r['zone']}\t{r['word']}\t{r['surprisal_bits']:.6f}\t{r['rt']:.4f}\t"
              f"{int(r['sentence_initial'])}\n" for r in rows]
    atomic_write_text(path, "".join(lines))


BASELINE = ("length", "log2_frequency", "prev_length", "prev_log2_frequency")
SURPRISAL = ("surprisal", "prev_surprisal")
FREQ_TOKENS = 50_000_000
NO_PREPARED = ("not computed: no prepared data folder to count word frequencies in (evaluate a step folder of a run, "
               "which records its data folder, or pass --prepared DIR)")


def baseline_regression(rows: list[dict], ctx) -> dict:
    """ΔR² and ΔLL of surprisal over word length and frequency with spill-over (module docstring)."""
    if ctx.prepared_dir is None:
        print(f"[connectomes] reading_times: ΔR² over the length + frequency baseline {NO_PREPARED}", file=sys.stderr)
        return {"skipped": NO_PREPARED}
    counts = split_word_counts(ctx.prepared_dir, ctx.option("reading_times.freq_tokens"))
    words = [r["word"] for r in rows]
    logf, smoothing = counts.log2_frequencies(words)
    length = np.array([len(w) for w in words], dtype=float)
    surprisal = np.array([r["surprisal_bits"] for r in rows])
    rt = np.array([r["rt"] for r in rows])
    story = np.array([r["story"] for r in rows])
    has_prev = np.r_[False, story[1:] == story[:-1]]
    prev = np.r_[0, np.arange(len(rows) - 1)]  # index of the previous word (meaningful where has_prev)
    ok = has_prev & np.isfinite(surprisal) & np.isfinite(surprisal[prev]) & np.isfinite(rt)
    record = {
        "target": "meanItemRT (ms)",
        "predictors": {"baseline": ["intercept", *BASELINE], "full": ["intercept", *BASELINE, *SURPRISAL]},
        "cv": "leave-one-story-out, held-out predictions pooled over the folds",
        "excluded": {"first_of_story": int((~has_prev).sum()),
                     "no_surprisal_here_or_before": int((has_prev & ~ok).sum())},
        "frequencies": {**counts.source, **smoothing, "log": "log2 of the smoothed relative frequency"},
    }
    if len(set(story[ok].tolist())) < 2:
        return {**record, "n": int(ok.sum()),
                "skipped": "not computed: leave-one-story-out needs words of at least two stories"}
    fit = compare_nested(rt[ok], dict(zip(BASELINE, (length[ok], logf[ok], length[prev][ok], logf[prev][ok]))),
                         dict(zip(SURPRISAL, (surprisal[ok], surprisal[prev][ok]))), story[ok])
    fit["folds"] = [{"story": f.pop("group"), **f} for f in fit["folds"]]
    return {**fit, **record}


def run(lm, ctx) -> dict:
    wordinfo = str(ctx.option("reading_times.file"))
    data = load_natural_stories(data_path(ctx, SPEC), wordinfo)
    words = list(data.words)
    rows = score_stories(lm, words)
    surprisal = np.array([r["surprisal_bits"] for r in rows])
    rt = np.array([r["rt"] for r in rows])
    initial = np.array([r["sentence_initial"] for r in rows])
    no_tokens = np.array([r["no_tokens"] for r in rows])
    res = {
        "all_words": pearson(surprisal, rt),
        "no_sentence_initial": pearson(np.where(initial, np.nan, surprisal), rt),
        "words": len(rows),
        "dropped": {"story_first_token": int((np.isnan(surprisal) & ~no_tokens).sum()),
                    "no_tokens": int(no_tokens.sum())},
        "baseline_regression": baseline_regression(rows, ctx),
        "sentence_initial_words": int(initial.sum()),
        "stories": sorted({r["story"] for r in rows}),
        "wordinfo_file": wordinfo,
        "variant": "each story one context (sliding window, half-window overlap, past the context length); "
                   "word surprisal = sum of its tokens' surprisals in bits (token -> word by character midpoint); "
                   "Pearson r with meanItemRT; ΔR² of surprisal over length and frequency (spill-over), "
                   "leave-one-story-out",
        "data_sha256": data.sha256,
    }
    res["selection"] = {"selection": "all", "n": res["all_words"]["n"], "of": len(rows), "unit": "words"}
    if ctx.out_dir is not None:
        out = Path(ctx.out_dir)
        make_dirs(out)
        write_table(rows, out / "reading_times_words.tsv")
        res["word_table"] = str(out / "reading_times_words.tsv")
    return res


def describe(result: dict, metric: Metric) -> str:
    leaf = result.get(metric.path[0], {})
    if metric.path[0] == "baseline_regression":
        if "skipped" in leaf or "n" not in leaf:
            return leaf.get("skipped", "not recorded")
        f = leaf.get("frequencies", {})
        return (f"{leaf['n']:,} words, leave-one-story-out over {len(leaf.get('folds', []))} stories; frequencies "
                f"from {f.get('tokens_counted', 0):,} tokens of the {f.get('split', '?')} split ({f.get('words', 0):,} words)")
    return f"all {leaf.get('n', result.get('words', 0)):,} words with a reading time (Pearson r)"


SPEC = TaskSpec(
    name="reading_times", doc="Natural Stories self-paced reading times vs word surprisal (Pearson r; ΔR² over a "
                              "length + frequency baseline, frequencies from the prepared large split)", run=run,
    data_dir="naturalstories",
    options=(path_option("reading_times", "naturalstories", "the Natural Stories folder"),
             Option("reading_times.file", NATURAL_STORIES_WORDINFO, "word-info table inside that folder"),
             Option("reading_times.freq_tokens", FREQ_TOKENS, "word frequencies of the ΔR² baseline are counted in "
                    "the first N tokens of the prepared large split (0 = all of it)", integer(0))),
    metrics=(Metric("reading times r (all words)", ("all_words", "r"), figures=("steps", "frontier"),
                    tick="Pearson r (surprisal vs reading time)"),
             Metric("reading times ΔR² over length + frequency", ("baseline_regression", "delta_r2"),
                    figures=("steps", "frontier"), tick="ΔR² (surprisal over length + frequency)"),
             Metric("reading times r (no sentence-initial)", ("no_sentence_initial", "r"))),
    title="Reading-time alignment", default=True, default_steps=True, describe=describe,
    revision=2,  # 2: baseline_regression (ΔR² over length + frequency) added
)
