"""langloc: language-selective units (Fedorenko et al. 2010 localizer, as used for LLMs) and the fmri
encoding through them (reference-code-notes §11.4, §12).

240 sentences vs 240 non-word lists (lower-cased, the 12 words joined by spaces). The last token's
output of every block (layers 1..L, not the embedding) per stimulus; a Welch t-test per unit
(sentences > non-words, signed activations; ``langloc.abs=true`` tests |activation| as
llm-localization does); the top 1% and top 10% of all L x D units across layers jointly — exactly
floor(p/100 * L * D) units, ties broken by unit index — saved as boolean masks; then the fmri
encoding (same CV as ``fmri``) on the concatenation of the selected units.

Truncation: llm-localization tokenises with max_length 12, so with GPT-2 BPE the "last token" is the
12th token. That is the default for the gpt2 tokenizer; with other tokenizers (bytes: 12 bytes would
be two words) the true last token is used. Set ``langloc.truncate`` (0 = none) to choose.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.shards import sha256_file
from ..errors import DataError
from .fmri import _alphas, cv_encoding_score, sentence_features, target

NAME = "langloc"
PERCENTS = (1, 10)


@lru_cache(maxsize=2)
def load_stimuli(folder: str) -> tuple[tuple[str, ...], tuple[str, ...], dict]:
    d = Path(folder)
    files = sorted(d.glob("*.csv"))
    if not files:
        raise DataError(f"no localizer CSVs in {d}; put the Fedorenko 2010 langloc_fmri_run*_stim_set*.csv files there")
    sent, non, hashes = [], [], {}
    for p in files:
        with open(p, encoding="utf-8", newline="") as f:
            for i, row in enumerate(csv.DictReader(f), 2):
                try:
                    words = [row[f"stim{k}"] for k in range(2, 14)]
                    cond = row["stim14"].strip()
                except KeyError as e:
                    raise DataError(f"{p}:{i}: missing column {e}; expected stim2..stim14") from None
                if cond not in ("S", "N"):
                    raise DataError(f"{p}:{i}: condition {cond!r} is neither S nor N")
                (sent if cond == "S" else non).append(" ".join(w.strip().lower() for w in words))
        hashes[p.name] = sha256_file(p)
    if len(sent) != len(non):
        raise DataError(f"{d}: {len(sent)} sentences but {len(non)} non-word lists; the localizer needs matched sets")
    return tuple(sent), tuple(non), hashes


def welch_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Welch t per column (a > b positive); NaN for constant columns becomes -inf (never selected)."""
    from scipy.stats import ttest_ind

    with np.errstate(invalid="ignore", divide="ignore"):
        t = ttest_ind(a, b, axis=0, equal_var=False).statistic
    return np.where(np.isfinite(t), t, -np.inf)


def select_top(t: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask over t's flat units: exactly floor(percent/100 * size) largest, ties by index."""
    k = math.floor(percent / 100 * t.size)
    flat = t.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))  # by -t, then by index
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(t.shape)


def localize(lm, sentences, nonwords, truncate: int, use_abs: bool = False) -> np.ndarray:
    """t-values [n_layer, width] of sentences vs non-words at the last token of each block output."""
    enc = lambda s: lm.tokenizer.encode(s)[:truncate] if truncate else lm.tokenizer.encode(s)  # noqa: E731
    a = lm.last_token_hidden([enc(s) for s in sentences], desc="langloc sentences")[:, 1:]
    b = lm.last_token_hidden([enc(s) for s in nonwords], desc="langloc non-words")[:, 1:]
    if use_abs:
        a, b = np.abs(a), np.abs(b)
    L, D = a.shape[1], a.shape[2]
    return welch_t(a.reshape(len(a), -1), b.reshape(len(b), -1)).reshape(L, D)


def run(lm, ctx) -> dict:
    if ctx.data_root is None and not ctx.options.get("langloc.path"):
        raise DataError("no data folder for langloc: set CONNECTOMES_DATA or pass --data-root")
    folder = Path(ctx.options.get("langloc.path") or Path(ctx.data_root) / "langloc")
    sentences, nonwords, hashes = load_stimuli(str(folder))
    trunc = ctx.options.get("langloc.truncate")
    truncate = int(trunc) if trunc is not None else (12 if lm.tokenizer.name == "gpt2" else 0)
    use_abs = str(ctx.options.get("langloc.abs", "false")).lower() == "true"
    t = localize(lm, sentences, nonwords, truncate, use_abs)
    fsent, y, roi, fsha = target(ctx)
    feats = sentence_features(lm, fsent)[:, 1:]  # blocks only, as the localizer
    res = {"roi": roi, "units_total": int(t.size), "truncate_tokens": truncate, "abs": use_abs,
           "stimuli": {"sentences": len(sentences), "nonwords": len(nonwords)},
           "variant": "Welch t (sentences > non-words) on last-token block outputs, top p% of all units across layers; "
                      "fmri encoding (RidgeCV in 5-fold CV) on the selected units",
           "data_sha256": {**hashes, "bold_response_LH.csv": fsha}}
    for p in PERCENTS:
        mask = select_top(t, p)
        enc = cv_encoding_score(feats[:, mask], y, alphas=_alphas(ctx)) if mask.any() else {"r": float("nan")}
        entry = {"units": int(mask.sum()), "per_layer_units": mask.sum(1).astype(int).tolist(), **enc}
        if ctx.out_dir is not None:
            out = Path(ctx.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            np.save(out / f"langloc_top{p}pct_mask.npy", mask)
            entry["mask_file"] = str(out / f"langloc_top{p}pct_mask.npy")
        res[f"top{p}"] = entry
    return res
