"""langloc: language-selective units (Fedorenko et al. 2010 localizer as used for LLMs) and the fmri
encoding through them (docs/method.md §6, §7).

240 sentences vs 240 non-word lists (lower-cased, the 12 words joined by spaces). For each stimulus,
the last token's output of every block (layers 1..L, not the embedding); a Welch t-test per unit,
sentences > non-words, on signed activations (brain-score's localizer; ``langloc.abs=true`` tests
|activation| as llm-localization's HEAD does); the top p% of all L x D units across layers jointly,
exactly floor(p/100 * L * D) units, ties broken by the lower flat (layer, unit) index; p = 1 and 10 by
default (``langloc.percents``). The masks [L, D] and the t-values are saved as .npy to ctx.out_dir.
Then the fmri encoding (same repeated cross-validated ridge, same options, target and ROI, all 1,000
sentences whatever the item limit) on the concatenation of the
selected units' last-token states for the fmri sentences, in (layer, unit) order.

Truncation: llm-localization tokenises with max_length 12, so with GPT-2 BPE every stimulus (12
words, at least 12 tokens) is cut to 12 tokens and the "last token" is the 12th - for non-words this
falls early in the string. That is the default for sub-word tokenizers; for ``bytes`` 12 tokens
would be about two words, so there the true last token is used. ``langloc.truncate`` (0 = none)
overrides either; ``langloc.path`` points at another stimulus folder.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...core.atomic import atomic_write, make_dirs
from ...core.errors import UserError
from ..alignment_data import load_langloc
from ..context import data_path
from ..registry import Metric, Option, TaskSpec, flag, path_option
from .fmri import (
    FOLDS,
    cv_encoding_score,
    describe_sentences,
    encoding_entry,
    sentence_features,
    target,
    with_alpha_counts,
)

DEFAULT_PERCENTS = (1, 10)
REFERENCE_TRUNCATE = 12  # llm-localization's tokenizer max_length


def welch_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Welch t per column of a [n_a, units] vs b [n_b, units]; positive when a is larger. A unit
    constant in both groups has no t: it gets -inf, so it is never selected."""
    from scipy.stats import ttest_ind

    with np.errstate(invalid="ignore", divide="ignore"):
        t = ttest_ind(a, b, axis=0, equal_var=False).statistic
    return np.where(np.isfinite(t), t, -np.inf)


def unit_count(percent: float, total: int) -> int:
    """floor(percent/100 * total), computed exactly (29 / 100 * 100 is 28.999... in floating point)."""
    return math.floor(Fraction(str(percent)) * total / 100)


def select_top(t: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of t's shape: the unit_count(percent, t.size) largest t, ties to the lower flat index."""
    flat = t.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))  # primary key -t, then the index
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:unit_count(percent, flat.size)]] = True
    return mask.reshape(t.shape)


def block_states(lm, texts, truncate: int, desc: str) -> np.ndarray:
    """[N, n_layer, width]: last-token outputs of the blocks (embedding dropped)."""
    ids = [lm.tokenizer.encode(s) for s in texts]
    if truncate:
        ids = [x[:truncate] for x in ids]
    return lm.last_token_hidden(ids, desc=desc)[:, 1:]


def localize(lm, sentences, nonwords, truncate: int, use_abs: bool = False) -> np.ndarray:
    """t-values [n_layer, width] of sentences vs non-words."""
    a = block_states(lm, sentences, truncate, "langloc sentences")
    b = block_states(lm, nonwords, truncate, "langloc non-words")
    if use_abs:
        a, b = np.abs(a), np.abs(b)
    n_layer, width = a.shape[1:]
    return welch_t(a.reshape(len(a), -1), b.reshape(len(b), -1)).reshape(n_layer, width)


def parse_truncate(raw, key: str) -> int | None:
    if raw is None:
        return None  # the tokenizer decides (see run)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise UserError(f"{key}={raw!r} must be a token count (0 = no truncation)")
    return n


def parse_percents(raw, key: str) -> tuple[float, ...]:
    try:
        percents = tuple(float(p) for p in (raw.split(",") if isinstance(raw, str) else raw))
    except (TypeError, ValueError):
        percents = ()
    if not percents or not all(0 < p <= 100 for p in percents):
        raise UserError(f"{key}={raw!r} must be comma-separated percentages in (0, 100], e.g. 1,10")
    return percents


def _truncate_option(ctx, tokenizer_name: str) -> int:
    n = ctx.option("langloc.truncate")
    if n is None:
        return 0 if tokenizer_name == "bytes" else REFERENCE_TRUNCATE
    return n


def _save(array: np.ndarray, path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the temporary's name
            np.save(f, array)

    atomic_write(path, write)


def _key(percent: float) -> str:
    return f"top{int(percent)}" if float(percent).is_integer() else f"top{percent:g}"


def run(lm, ctx) -> dict:
    stimuli = load_langloc(data_path(ctx, SPEC))
    truncate = _truncate_option(ctx, lm.tokenizer.name)
    use_abs = ctx.option("langloc.abs")
    percents = ctx.option("langloc.percents")
    alphas, partitions = ctx.option("fmri.alphas"), ctx.option("fmri.partitions")
    fmri_sentences, y, roi, fmri_sha = target(ctx)

    t = localize(lm, stimuli.sentences, stimuli.nonwords, truncate, use_abs)
    feats = sentence_features(lm, fmri_sentences)[:, 1:]  # blocks only, as the localizer
    out = Path(ctx.out_dir) if ctx.out_dir is not None else None
    if out is not None:
        make_dirs(out)
        _save(t.astype(np.float32), out / "langloc_t.npy")
    res = {
        "roi": roi,
        "units_total": int(t.size),
        "layers": int(t.shape[0]),
        "truncate_tokens": truncate,
        "abs": use_abs,
        "stimuli": {"sentences": len(stimuli.sentences), "nonwords": len(stimuli.nonwords)},
        "fmri_items": len(fmri_sentences),
        "partitions": partitions,
        "folds": FOLDS,
        "variant": f"Welch t (sentences > non-words) on last-token block outputs, top p% of all units across "
                   f"layers (ties to the lower index); fmri encoding (RidgeCV in KFold({FOLDS}, shuffle, "
                   f"random_state=p), p = 0..{partitions - 1}, mean +- s.e. over partitions) on the selected units",
        "data_sha256": {**stimuli.sha256, **fmri_sha},
        "selection": {"selection": "all", "n": len(fmri_sentences), "of": len(fmri_sentences), "unit": "sentences"},
    }
    for p in percents:
        mask = select_top(t, p)
        entry = {"percent": p, "units": int(mask.sum()),
                 "per_layer_units": mask.sum(axis=1).astype(int).tolist()}  # index i = block i+1
        if mask.any():
            entry.update(encoding_entry(cv_encoding_score(feats[:, mask], y, partitions=partitions, alphas=alphas)))
        else:
            entry["r"] = math.nan  # fewer than 100/p units in all: nothing to encode with
        if out is not None:
            _save(mask, out / f"langloc_{_key(p)}pct_mask.npy")
            entry["mask_file"] = str(out / f"langloc_{_key(p)}pct_mask.npy")
        res[_key(p)] = entry
    return res


def encoding(result: dict) -> list[tuple[str, dict]]:
    """The unit selections' encoding scores, for the report's cross-validation table."""
    return with_alpha_counts([(f"fMRI top-{v['percent']:g}% language units", v) for k, v in result.items()
                              if k.startswith("top") and isinstance(v, dict)])


SPEC = TaskSpec(
    name="langloc", doc="language-localizer units (sentences > non-words) encoding the fMRI responses", run=run,
    data_dir="langloc",
    options=(path_option("langloc", "langloc", "folder of localizer CSVs"),
             Option("langloc.truncate", None, "tokens per stimulus (0 = all); default 0 for bytes, "
                    f"{REFERENCE_TRUNCATE} otherwise", parse_truncate),
             Option("langloc.abs", False, "compare absolute activations", flag),
             Option("langloc.percents", DEFAULT_PERCENTS, "top percentages of units to select, comma-separated",
                    parse_percents)),
    metrics=(Metric("fMRI top-1% units r", ("top1", "r"), figures=("units",), tick="top 1% units"),
             Metric("fMRI top-10% units r", ("top10", "r"), figures=("units",), tick="top 10% units")),
    title="language-selective units", default=True, describe=describe_sentences, encoding=encoding,
)
