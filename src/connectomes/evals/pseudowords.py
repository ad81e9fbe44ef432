"""The lexical-decision items: real words and pseudo-words matched to them (docs/method.md §6).

**Word list.** The words of the BLiMP and Zorro sentences in the data folder (``blimp/``, ``zorro/``), a
source other than any training corpus: every whitespace-separated token, stripped of punctuation at either
end, that is written in lower-case letters a-z only somewhere (so proper nouns, always capitalised, stay out),
3 to 10 letters long. Sorted, so the list is a function of those files alone.

**Pseudo-words, Wuggy-style** (Keuleers & Brysbaert 2010, orthographically). A word is cut into segments
of consonant and vowel letters (a, e, i, o, u; y is a vowel after a consonant): an onset (the consonants
before the first vowel), nuclei (vowel runs), medial clusters (the consonants between two nuclei) and a coda
(the consonants after the last). A pseudo-word replaces half of a word's segments (at least one) with
segments of the same kind and the same length taken from other words of the list, drawn in proportion to
how many word types hold them, so it has the word's length exactly. A candidate is kept only when

- cut again into segments, it has the word's kinds and lengths of segments (its consonant-vowel skeleton: a
  y can otherwise move an edge);
- it is no word: not in the lexicon, which is every word of the list, every token of the BLiMP and Zorro
  sentences, and every letter run of every text under the data folder's ``corpus/`` (all corpora a run can
  be prepared from), and no other word's pseudo-word;
- every letter bigram of it, word edges included (``^c``, ``t$``), occurs in the list;
- its bigram statistic, the mean log2 type frequency of those bigrams in the list, lies within
  :data:`TOLERANCE` bits of the word's.

Of up to :data:`ATTEMPTS` candidates the one closest in the bigram statistic is taken (the first on a tie);
a word without one is left out and counted. Each word draws from its own numpy Generator seeded by
(seed, crc32 of the word), so a word's pseudo-word does not depend on which other words the list holds
(except through the no-duplicates rule). The item list, and with it its sha256, is a function of the
data folder's files and the seed; the task records both.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.readers import read_jsonl

VOWELS = frozenset("aeiou")
MIN_LEN, MAX_LEN = 3, 10
TOLERANCE = 0.5  # bits: |mean log2 bigram frequency of the pseudo-word - the word's|
ATTEMPTS = 200
METHOD = ("Wuggy-style: half of the word's orthographic segments (onset, nuclei, medial clusters, coda; at least "
          "one) replaced by segments of the same kind and length from other words of the list; no word of the "
          f"lexicon; every letter bigram attested; mean log2 bigram type frequency within {TOLERANCE} bits of the "
          f"word's; the closest of {ATTEMPTS} candidates")
_WORD = re.compile(r"^[a-z]+$")
_LETTERS = re.compile(r"[a-z]+")


def strip(token: str) -> str:
    """A token without the punctuation at either end."""
    return token.strip(".,;:!?\"'()[]{}")


def sentences(data_root: Path) -> list[str]:
    """Every sentence of the BLiMP paradigm files and the Zorro files, in file order."""
    out = []
    blimp = data_root / "blimp" / "data" if (data_root / "blimp" / "data").is_dir() else data_root / "blimp"
    for p in sorted(blimp.glob("*.jsonl")):
        if p.name == "models_summary.jsonl":
            continue
        for rec in read_jsonl(p, remedy="fix or replace the BLiMP file").records:
            out += [rec.get("sentence_good", ""), rec.get("sentence_bad", "")]
    zorro = data_root / "zorro" / "sentences" if (data_root / "zorro" / "sentences").is_dir() else data_root / "zorro"
    for p in sorted(zorro.glob("*.txt")):
        out += p.read_text(encoding="utf-8").splitlines()
    if not out:
        raise DataError(f"no BLiMP or Zorro sentences under {data_root} (blimp/, zorro/) to draw the word list from")
    return out


def word_list(texts: list[str]) -> tuple[list[str], set[str]]:
    """(the sorted word list, every token of the texts lower-cased) (module docstring)."""
    words, tokens = set(), set()
    for s in texts:
        for t in s.split():
            t = strip(t)
            tokens.add(t.lower())
            if MIN_LEN <= len(t) <= MAX_LEN and _WORD.match(t):
                words.add(t)
    return sorted(words), tokens


def corpus_words(data_root: Path) -> set[str]:
    """Every lower-cased letter run of every text file under ``corpus/`` (none when the folder is absent)."""
    out: set[str] = set()
    folder = data_root / "corpus"
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if p.is_file() and p.suffix in (".txt", ".jsonl", ".md"):
            out.update(_LETTERS.findall(p.read_text(encoding="utf-8", errors="replace").lower()))
    return out


def segments(word: str) -> list[tuple[str, str]]:
    """(kind, letters) of each segment: onset, nucleus, medial, coda (module docstring)."""
    runs: list[list] = []
    for i, ch in enumerate(word):
        vowel = ch in VOWELS or (ch == "y" and i > 0 and word[i - 1] not in VOWELS)
        if runs and runs[-1][0] == vowel:
            runs[-1][1] += ch
        else:
            runs.append([vowel, ch])
    out = []
    for k, (vowel, letters) in enumerate(runs):
        kind = "nucleus" if vowel else "onset" if k == 0 else "coda" if k == len(runs) - 1 else "medial"
        out.append((kind, letters))
    return out


def bigrams(word: str) -> list[str]:
    w = f"^{word}$"
    return [w[i:i + 2] for i in range(len(w) - 1)]


@dataclass(frozen=True)
class Bigrams:
    counts: Counter  # bigram -> word types holding it (each type once per bigram occurrence)

    @classmethod
    def of(cls, words: list[str]) -> Bigrams:
        return cls(Counter(b for w in words for b in bigrams(w)))

    def legal(self, word: str) -> bool:
        return all(b in self.counts for b in bigrams(word))

    def statistic(self, word: str) -> float:
        """Mean log2 frequency of the word's bigrams in the list (an unattested bigram counts as 0.5)."""
        bs = bigrams(word)
        return sum(math.log2(self.counts.get(b, 0.5)) for b in bs) / len(bs)


def _pools(words: list[str]) -> dict[tuple[str, int], tuple[list[str], np.ndarray]]:
    """(kind, length) -> (segments in sorted order, their cumulative probabilities: word types holding each)."""
    counts: dict[tuple[str, int], Counter] = {}
    for w in words:
        for kind, seg in segments(w):
            counts.setdefault((kind, len(seg)), Counter())[seg] += 1
    out = {}
    for key, c in counts.items():
        segs = sorted(c)
        p = np.array([c[s] for s in segs], dtype=float)
        out[key] = (segs, np.cumsum(p) / p.sum())
    return out


def pseudo_for(word: str, seed: int, pools, stats: Bigrams, lexicon: set[str], taken: set[str]) -> str | None:
    """The pseudo-word of one word (module docstring), or None when no candidate passes."""
    segs = segments(word)
    shape = [(kind, len(seg)) for kind, seg in segs]
    rng = np.random.default_rng([seed, zlib.crc32(word.encode())])
    target = stats.statistic(word)
    best, best_gap = None, None
    k = max(1, len(segs) // 2)
    for _ in range(ATTEMPTS):
        chosen = rng.permutation(len(segs))[:k]
        parts = [s for _, s in segs]
        for j, u in zip(sorted(chosen.tolist()), rng.random(k)):
            kind, seg = segs[j]
            pool, cdf = pools[(kind, len(seg))]
            parts[j] = pool[min(int(np.searchsorted(cdf, u, side="right")), len(pool) - 1)]
        cand = "".join(parts)
        if cand == word or cand in lexicon or cand in taken or not stats.legal(cand) or \
                [(kind, len(seg)) for kind, seg in segments(cand)] != shape:  # a y can move a segment's edge
            continue
        gap = abs(stats.statistic(cand) - target)
        if gap <= TOLERANCE and (best_gap is None or gap < best_gap):
            best, best_gap = cand, gap
    return best


def generate(words: list[str], lexicon: set[str], seed: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """([(word, pseudo-word)] in word order, the words left without one)."""
    pools, stats = _pools(words), Bigrams.of(words)
    pairs, unmatched, taken = [], [], set()
    lexicon = lexicon | set(words)
    for w in words:
        p = pseudo_for(w, seed, pools, stats, lexicon, taken)
        if p is None:
            unmatched.append(w)
        else:
            taken.add(p)
            pairs.append((w, p))
    return pairs, unmatched


def items_sha256(pairs: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def _stamp(data_root: Path) -> tuple:
    files = [p for d in ("blimp", "zorro", "corpus") if (data_root / d).is_dir() for p in sorted((data_root / d).rglob("*"))
             if p.is_file()]
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def items(data_root: Path, seed: int = 0) -> dict:
    """The lexical-decision items of a data folder: {"pairs": [(word, pseudo-word)], "unmatched": [...],
    "words": n, "sha256": digest of the pairs, "method": ...}; cached while no file under it changes."""
    return _items(str(Path(data_root).resolve()), int(seed), _stamp(Path(data_root)))


@lru_cache(maxsize=2)
def _items(data_root: str, seed: int, stamp: tuple) -> dict:
    root = Path(data_root)
    words, tokens = word_list(sentences(root))
    pairs, unmatched = generate(words, tokens | corpus_words(root), seed)
    return {"pairs": pairs, "unmatched": unmatched, "words": len(words), "sha256": items_sha256(pairs),
            "method": METHOD, "seed": seed, "tolerance_bits": TOLERANCE}
