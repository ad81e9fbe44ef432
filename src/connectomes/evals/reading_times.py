"""reading_times: surprisal vs self-paced reading times on Natural Stories (method.md §6; notes §10).

Per word, the target is ``meanItemRT`` of ``processed_wordinfo.tsv``, joined with ``all_stories.tok``
on (item, zone). Each story is read in full as one context (the words joined by single spaces; a
sliding window with overlap past the context length). Each sub-word token belongs to the word that
contains its character midpoint; a midpoint on a space goes to the following word (the space is part
of that word's leading-space token). Word surprisal = sum of its tokens' surprisals, in bits. The
story's first token has no surprisal, so a word containing it is dropped (counted).

Metrics: Pearson r over all words (the paper's variant ``all_words``) and without sentence-initial
words (``no_sentence_initial``, Brain-Score's exclusion). A word is sentence-initial when it starts a
story or the previous word ends in . ? or ! (optionally followed by closing quotes or brackets).
"""

from __future__ import annotations

import bisect
import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.shards import sha256_file
from ..errors import DataError

NAME = "reading_times"
SENTENCE_END = re.compile(r"[.?!][\"'’”)\]]*$")


@dataclass(frozen=True)
class Word:
    story: int
    zone: int
    word: str
    rt: float


def _read_tsv(path: Path, need: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} is missing; the Natural Stories folder needs all_stories.tok and processed_wordinfo.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or any(k not in rows[0] for k in need):
        raise DataError(f"{path} lacks the columns {', '.join(need)}; is it the Natural Stories file?")
    return rows


@lru_cache(maxsize=4)
def _load(folder: str, wordinfo: str) -> tuple[tuple[Word, ...], dict]:
    d = Path(folder)
    tok_path, info_path = d / "all_stories.tok", d / wordinfo
    toks = _read_tsv(tok_path, ("word", "zone", "item"))
    info = _read_tsv(info_path, ("word", "zone", "item", "meanItemRT"))
    try:
        rt = {(int(r["item"]), int(r["zone"])): (r["word"], float(r["meanItemRT"])) for r in info}
    except ValueError as e:
        raise DataError(f"{info_path} has a malformed row ({e})") from None
    words = []
    for i, r in enumerate(toks, 2):
        try:
            key = (int(r["item"]), int(r["zone"]))
        except ValueError:
            raise DataError(f"{tok_path}:{i}: malformed item/zone") from None
        if key not in rt:
            raise DataError(f"{info_path} has no row for story {key[0]} zone {key[1]} ({tok_path}:{i})")
        if rt[key][0] != r["word"]:
            raise DataError(f"{info_path} and {tok_path} disagree at story {key[0]} zone {key[1]}: "
                            f"{rt[key][0]!r} vs {r['word']!r}; use matching files")
        words.append(Word(key[0], key[1], r["word"], rt[key][1]))
    words.sort(key=lambda w: (w.story, w.zone))
    hashes = {tok_path.name: sha256_file(tok_path), info_path.name: sha256_file(info_path)}
    return tuple(words), hashes


def word_spans(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def assign_tokens(token_spans: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Word index of each token: the word holding the token's character midpoint, or the next word
    when the midpoint falls on a space."""
    starts = [s for s, _ in spans]
    out = []
    for s, e in token_spans:
        m = (s + e) / 2 if e > s else s
        i = max(0, bisect.bisect_right(starts, m) - 1)
        if m >= spans[i][1] and i + 1 < len(spans):
            i += 1
        out.append(i)
    return out


def word_surprisals(lm, words: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """Surprisal in bits per word (NaN where a word holds the context's first token) and each word's tokens."""
    text, spans = word_spans(words)
    ids, tspans = lm.tokenizer.encode_with_offsets(text)
    owner = assign_tokens(tspans, spans)
    lp = lm.token_logprobs(ids)  # lp[t-1] = log p(token t | < t)
    bits = np.zeros(len(words))
    tokens_of: list[list[int]] = [[] for _ in words]
    for t, w in enumerate(owner):
        tokens_of[w].append(t)
        bits[w] += math.nan if t == 0 else -lp[t - 1] / math.log(2)
    for w, ts in enumerate(tokens_of):
        if not ts:
            bits[w] = math.nan
    return bits, tokens_of


def sentence_initial(words: list[str]) -> list[bool]:
    return [i == 0 or bool(SENTENCE_END.search(words[i - 1])) for i in range(len(words))]


def pearson(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import pearsonr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return {"r": float("nan"), "p": float("nan"), "n": int(ok.sum())}
    r, p = pearsonr(x[ok], y[ok])
    return {"r": float(r), "p": float(p), "n": int(ok.sum())}


def run(lm, ctx) -> dict:
    if ctx.data_root is None:
        raise DataError("no data folder for reading_times: set CONNECTOMES_DATA or pass --data-root")
    folder = Path(ctx.data_root) / "naturalstories"
    wordinfo = ctx.options.get("reading_times.file", "processed_wordinfo.tsv")
    words, hashes = _load(str(folder), wordinfo)
    stories = sorted({w.story for w in words})
    if ctx.limit:
        stories = stories[: max(1, ctx.limit // 1000)]  # --limit counts words: whole stories of ~1,000 words
    table = []
    for s in stories:
        ws = [w for w in words if w.story == s]
        bits, _ = word_surprisals(lm, [w.word for w in ws])
        init = sentence_initial([w.word for w in ws])
        table += [(w, b, i) for w, b, i in zip(ws, bits, init)]
    surpr = np.array([b for _, b, _ in table])
    rts = np.array([w.rt for w, _, _ in table])
    initial = np.array([i for _, _, i in table])
    res = {
        "all_words": pearson(surpr, rts),
        "no_sentence_initial": pearson(np.where(initial, np.nan, surpr), rts),
        "words": len(table),
        "words_without_surprisal": int(np.isnan(surpr).sum()),
        "stories": stories,
        "variant": "each story one context (sliding window past the context length), surprisal in bits summed over "
                   "sub-word tokens, Pearson r with meanItemRT",
        "data_sha256": hashes,
    }
    if ctx.out_dir is not None:
        out = Path(ctx.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "reading_times_words.tsv"
        with open(path, "w") as f:
            f.write("story\tzone\tword\tsurprisal_bits\trt_ms\tsentence_initial\n")
            for w, b, i in table:
                f.write(f"{w.story}\t{w.zone}\t{w.word}\t{b:.6f}\t{w.rt:.3f}\t{int(i)}\n")
        res["word_table"] = str(path)
    return res
