"""Word frequencies from a study's own prepared split, for the reading-time baseline (docs/method.md §6).

A word is a whitespace-separated piece of text, as a Natural Stories word is; its key is the word in
lower case with ’ read as ' and the non-alphanumeric characters at either end stripped (``"Mountains."``
and ``mountains`` share the key ``mountains``; a word of punctuation only keeps its lower-cased form).
The split's tokens are decoded in order (documents split at the end-of-text id, so two documents never
join into one word; a word cut by a decoding chunk is carried into the next chunk) and every word is
counted under its key, up to a token budget (the first ``max_tokens`` tokens of the split; 0 = all).

A word's log frequency is log2 of its add-one smoothed relative frequency, (count + 1) / (N + V), with
N the words counted and V the word types: the types of the counts plus the words scored that the counts
lack, so the smoothed probabilities of that vocabulary sum to one.

Counting is once per process and folder (cached on the folder, its shard digests and the budget):
evaluating many steps of one run reads the split once. Each shard read is checked against the sha256
its meta.json recorded, and only the shards read are.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.integrity import verify_file
from ..data.prepare import open_prepared
from ..data.shards import read_shard

SPLIT = "large"
CHUNK_TOKENS = 1 << 22  # tokens decoded at a time


def word_key(word: str) -> str:
    """The key a word is counted under (module docstring)."""
    low = word.lower().replace("’", "'")
    alnum = [i for i, ch in enumerate(low) if ch.isalnum()]
    return low[alnum[0]:alnum[-1] + 1] if alnum else low


@dataclass(frozen=True)
class WordCounts:
    counts: dict[str, int]  # key -> count
    total: int  # words counted (N)
    source: dict  # what was counted: folder, split, tokens, digests (JSON-able)

    def log2_frequencies(self, words: list[str]) -> tuple[np.ndarray, dict]:
        """log2 (count + 1) / (N + V) of each word's key (module docstring), and the smoothing record."""
        keys = [word_key(w) for w in words]
        unseen = {k for k in keys if k not in self.counts}
        types = len(self.counts) + len(unseen)
        denom = self.total + types
        logf = np.array([np.log2((self.counts.get(k, 0) + 1) / denom) for k in keys])
        return logf, {"smoothing": "add-one: (count + 1) / (N + V)", "N": self.total, "V": types,
                      "types_counted": len(self.counts), "scored_types_unseen": len(unseen),
                      "scored_words_unseen": sum(k in unseen for k in keys)}


def _texts(arrays: list[np.ndarray], tokenizer, eot: int | None):
    """The token arrays decoded in chunks, in order, documents joined by a newline (the end-of-text id never
    joins two words)."""
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if tokenizer.name == "bytes" else None
    chunks = (np.asarray(a[s:s + CHUNK_TOKENS]) for a in arrays for s in range(0, len(a), CHUNK_TOKENS))
    for chunk in chunks:
        cuts = np.flatnonzero(chunk == eot) if eot is not None else np.zeros(0, dtype=np.int64)
        pieces, prev = [], 0
        for c in [*cuts.tolist(), len(chunk)]:
            part = chunk[prev:c]
            if utf8 is not None:  # a character cut by the chunk or the document edge is decoded whole
                pieces.append(utf8.decode(part.astype(np.uint8).tobytes(), final=c < len(chunk)))
            else:
                pieces.append(tokenizer.decode(part.tolist()) if len(part) else "")
            prev = c + 1
        yield "\n".join(pieces)


def count_words(arrays: list[np.ndarray], tokenizer, eot: int | None) -> Counter:
    """{key: count} of the words of the token arrays read in order (module docstring)."""
    raw: Counter = Counter()
    carry = ""
    for text in _texts(arrays, tokenizer, eot):
        text = carry + text
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        carry, text = (text[cut + 1:], text[:cut + 1]) if cut >= 0 else (text, "")
        raw.update(text.split())
    raw.update(carry.split())
    keyed: Counter = Counter()
    for w, n in raw.items():
        keyed[word_key(w)] += n
    return keyed


def split_word_counts(prepared_dir: str | Path, max_tokens: int = 0) -> WordCounts:
    """Word counts of the first ``max_tokens`` tokens (0 = all) of a prepared folder's large split."""
    data = open_prepared(prepared_dir, verify=False)
    info = data.meta.get("splits", {}).get(SPLIT)
    if not isinstance(info, dict) or not info.get("shards"):
        raise DataError(f"{data.dir} has no {SPLIT} split to count word frequencies in; run `connectomes prepare`")
    digests = info.get("sha256", {})
    key = json.dumps([info["shards"], [digests.get(n) for n in info["shards"]]])
    return _cached_counts(str(Path(data.dir).resolve()), key, int(max_tokens))


@lru_cache(maxsize=4)
def _cached_counts(folder: str, shards_key: str, max_tokens: int) -> WordCounts:
    data = open_prepared(folder, verify=False)
    info = data.meta["splits"][SPLIT]
    tok = data.tokenizer()
    eot = data.meta.get("eot_id", getattr(tok, "eot_id", None))
    remedy = f"delete {data.dir} and run `connectomes prepare` again"
    used, parts, read, budget = [], [], 0, max_tokens or None
    for name in info["shards"]:
        if budget is not None and read >= budget:
            break
        path = data.dir / name
        if name not in info.get("sha256", {}):
            raise DataError(f"{data.dir / 'meta.json'} records no sha256 for {name}, so it cannot be checked; {remedy}")
        verify_file(path, info["sha256"][name], remedy=remedy, error=DataError)
        toks = read_shard(path)
        if budget is not None:
            toks = toks[:budget - read]
        parts.append(toks)
        read += len(toks)
        used.append({"file": name, "sha256": info["sha256"][name], "tokens": int(len(toks))})
    counts = count_words(parts, tok, eot)
    ordered = dict(sorted(counts.items()))
    counts_sha = hashlib.sha256(json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
    split_sha = hashlib.sha256(json.dumps({n: info["sha256"].get(n) for n in info["shards"]}, sort_keys=True)
                               .encode()).hexdigest()
    total = sum(ordered.values())
    source = {"prepared_dir": folder, "split": SPLIT, "tokenizer": tok.name, "tokens_counted": read,
              "tokens_in_split": int(info.get("tokens", read)), "max_tokens": max_tokens, "shards": used,
              "split_sha256": split_sha, "counts_sha256": counts_sha, "words": total, "types": len(ordered)}
    return WordCounts(ordered, total, source)
