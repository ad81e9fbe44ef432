"""Loaders for the three human data sets of the alignment evaluations (docs/method.md §6).

- Natural Stories self-paced reading (``naturalstories/``): per-word mean reading times;
- Tuckute et al. 2024 (``tuckute2024/bold_response_LH.csv``): language-network responses to 1,000 sentences;
- Fedorenko et al. 2010 localizer (``langloc/*.csv``): 240 sentences and 240 non-word lists.

Every loader checks its file and raises :class:`DataError` naming the file (and line) and what to do.
Parsed files are cached per process, keyed on (path, mtime, size), so evaluating many checkpoints
reads each file once and an edited file is read again.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.integrity import sha256_file

NATURAL_STORIES_TOKENS = "all_stories.tok"
NATURAL_STORIES_WORDINFO = "processed_wordinfo.tsv"
TUCKUTE_FILE = "bold_response_LH.csv"


def _stamp(path: Path, what: str) -> tuple[str, int, int]:
    if not path.is_file():
        raise DataError(f"{path} is missing; {what}")
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _read_rows(path: Path, delimiter: str, need: tuple[str, ...], what: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            rows = list(reader)
            header = reader.fieldnames or []
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; {what}") from None
    missing = [k for k in need if k not in header]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; {what}")
    if not rows:
        raise DataError(f"{path} has a header but no rows; {what}")
    return rows


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{line}: {column} {value!r} is not an integer; fix or replace the file") from None


def _float(value: str, path: Path, line: int, column: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{line}: {column} {value!r} is not a number; fix or replace the file") from None


# ------------------------------------------------------------------------------ Natural Stories


@dataclass(frozen=True)
class StoryWord:
    story: int
    zone: int  # position in the story, from 1
    word: str  # as displayed, punctuation attached
    rt: float  # mean reading time over subjects (ms)


@dataclass(frozen=True)
class NaturalStories:
    words: tuple[StoryWord, ...]  # in (story, zone) order
    sha256: dict[str, str]


def load_natural_stories(folder: str | Path, wordinfo: str = NATURAL_STORIES_WORDINFO) -> NaturalStories:
    """Join all_stories.tok with a wordinfo TSV on (item, zone); the words must agree row for row."""
    folder = Path(folder)
    what = "the Natural Stories folder needs all_stories.tok and processed_wordinfo.tsv (see its README)"
    tok = _stamp(folder / NATURAL_STORIES_TOKENS, what)
    info = _stamp(folder / wordinfo, f"choose an existing wordinfo file with the option reading_times.file; {what}")
    return _natural_stories(tok, info)


@lru_cache(maxsize=4)
def _natural_stories(tok_stamp: tuple, info_stamp: tuple) -> NaturalStories:
    tok_path, info_path = Path(tok_stamp[0]), Path(info_stamp[0])
    what = "use the files of languageMIT/naturalstories (naturalstories_RTS/)"
    toks = _read_rows(tok_path, "\t", ("word", "zone", "item"), what)
    info = _read_rows(info_path, "\t", ("word", "zone", "item", "meanItemRT"), what)
    rts: dict[tuple[int, int], tuple[str, float]] = {}
    for line, r in enumerate(info, 2):
        key = (_int(r["item"], info_path, line, "item"), _int(r["zone"], info_path, line, "zone"))
        if key in rts:
            raise DataError(f"{info_path}:{line}: story {key[0]} zone {key[1]} appears twice; {what}")
        rts[key] = (r["word"], _float(r["meanItemRT"], info_path, line, "meanItemRT"))
    words, seen = [], set()
    for line, r in enumerate(toks, 2):
        key = (_int(r["item"], tok_path, line, "item"), _int(r["zone"], tok_path, line, "zone"))
        if key in seen:
            raise DataError(f"{tok_path}:{line}: story {key[0]} zone {key[1]} appears twice; {what}")
        seen.add(key)
        if key not in rts:
            raise DataError(f"{info_path} has no row for story {key[0]} zone {key[1]} ({tok_path}:{line}); "
                            "use a wordinfo file made for this all_stories.tok")
        word, rt = rts[key]
        if word != r["word"]:
            raise DataError(f"{info_path} and {tok_path} disagree at story {key[0]} zone {key[1]}: "
                            f"{word!r} vs {r['word']!r}; use matching files")
        words.append(StoryWord(key[0], key[1], word, rt))
    if len(rts) != len(words):
        raise DataError(f"{info_path} has {len(rts)} rows but {tok_path} has {len(words)} words; use matching files")
    words.sort(key=lambda w: (w.story, w.zone))
    return NaturalStories(tuple(words), {tok_path.name: sha256_file(tok_path), info_path.name: sha256_file(info_path)})


# ------------------------------------------------------------------------------ Tuckute et al. 2024


@dataclass(frozen=True)
class SentenceResponses:
    item_ids: tuple[str, ...]
    sentences: tuple[str, ...]
    responses: dict[str, np.ndarray]  # ROI column -> [n_items] response
    sha256: dict[str, str]


def load_tuckute2024(path: str | Path) -> SentenceResponses:
    """Items ordered by item_id as strings ("B.1", "B.10", "B.100", ...): the order the authors'
    pandas pivot produced, so that the shuffled 5-fold split assigns the same items to each fold."""
    what = "put Tuckute et al. 2024's bold_response_LH.csv there (see tuckute2024/README.md)"
    return _tuckute2024(_stamp(Path(path), what))


@lru_cache(maxsize=2)
def _tuckute2024(stamp: tuple) -> SentenceResponses:
    path = Path(stamp[0])
    rows = _read_rows(path, ",", ("item_id", "sentence"), "is it Tuckute 2024's bold_response_LH.csv?")
    rois = [c for c in rows[0] if c not in ("item_id", "sentence") and c]
    if not rois:
        raise DataError(f"{path} has no response columns besides item_id and sentence; is it bold_response_LH.csv?")
    ids = [r["item_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: item_id values repeat; each sentence must appear once")
    order = sorted(range(len(rows)), key=lambda i: ids[i])
    responses = {roi: np.array([_float(rows[i][roi], path, i + 2, roi) for i in order]) for roi in rois}
    return SentenceResponses(tuple(ids[i] for i in order), tuple(rows[i]["sentence"] for i in order), responses,
                             {path.name: sha256_file(path)})


# ------------------------------------------------------------------------------ Fedorenko 2010 localizer

LOCALIZER_WORDS = tuple(f"stim{k}" for k in range(2, 14))  # the 12 words of a trial
LOCALIZER_CONDITION = "stim14"  # S (sentence) or N (non-word list)


@dataclass(frozen=True)
class LocalizerStimuli:
    sentences: tuple[str, ...]  # lower-cased, words joined by single spaces (llm-localization)
    nonwords: tuple[str, ...]
    sha256: dict[str, str]


def load_langloc(folder: str | Path) -> LocalizerStimuli:
    """All *.csv of the folder in sorted order (llm-localization's glob order pairs them by row)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise DataError(f"no localizer CSVs in {folder}; put the Fedorenko 2010 langloc_fmri_run*_stim_set*.csv files "
                        "there (see langloc/README.md)")
    return _langloc(tuple(_stamp(p, "") for p in files))


@lru_cache(maxsize=2)
def _langloc(stamps: tuple) -> LocalizerStimuli:
    sentences, nonwords, hashes = [], [], {}
    what = "expected stim1..stim14 as in brain-score's fedorenko2010_localization"
    for stamp in stamps:
        path = Path(stamp[0])
        for line, row in enumerate(_read_rows(path, ",", LOCALIZER_WORDS + (LOCALIZER_CONDITION,), what), 2):
            words = [(row[c] or "").strip() for c in LOCALIZER_WORDS]
            if not all(words):
                raise DataError(f"{path}:{line}: a word is empty; every trial has 12 words in stim2..stim13")
            condition = (row[LOCALIZER_CONDITION] or "").strip()
            if condition not in ("S", "N"):
                raise DataError(f"{path}:{line}: condition {condition!r} in stim14 is neither S nor N")
            (sentences if condition == "S" else nonwords).append(" ".join(words).lower())
        hashes[path.name] = sha256_file(path)
    if len(sentences) != len(nonwords):
        raise DataError(f"{Path(stamps[0][0]).parent}: {len(sentences)} sentences but {len(nonwords)} non-word lists; "
                        "the localizer contrasts matched sets, use the complete set of CSVs")
    return LocalizerStimuli(tuple(sentences), tuple(nonwords), hashes)
