"""fmri: encoding of the language network's responses to 1,000 sentences (Tuckute et al. 2024).

Each sentence is encoded alone; features are the last token's residual stream at every layer (0 =
embedding output, k = output of block k, before the final norm). Per layer, ridge regression with the
regularisation chosen by efficient leave-one-out CV inside each training fold (scikit-learn RidgeCV),
inside a 5-fold outer KFold (shuffled, seed 0); the score is the mean over folds of Pearson r between
predicted and measured responses (r = 0 when either is constant), as the authors' code
(reference-code-notes §11.3). Reported per layer, with the best layer and, for ``lang_LH_netw``,
r divided by the published noise ceiling 0.559.

No feature standardisation (as the reference). The alpha grid is 10^-4 .. 10^10 (29 values): the
reference's 10^-30 .. 10^29 only adds numerically meaningless extremes; set ``fmri.alphas`` to change it.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.shards import sha256_file
from ..errors import DataError

NAME = "fmri"
DEFAULT_ROI = "lang_LH_netw"
NOISE_CEILING = {"lang_LH_netw": 0.559}
DEFAULT_ALPHAS = tuple(np.logspace(-4, 10, 29))


@lru_cache(maxsize=2)
def load_responses(path: str) -> tuple[tuple[str, ...], dict[str, np.ndarray], str]:
    """(sentences, {roi: responses}, sha256) in item_id order."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} is missing; put Tuckute 2024's bold_response_LH.csv there (see its README)")
    with open(p, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "sentence" not in rows[0]:
        raise DataError(f"{p} has no 'sentence' column; is it bold_response_LH.csv?")
    rois = [c for c in rows[0] if c not in ("item_id", "sentence", "")]
    values = {}
    for roi in rois:
        try:
            values[roi] = np.array([float(r[roi]) for r in rows])
        except (TypeError, ValueError):
            raise DataError(f"{p}: column {roi} has a non-numeric value") from None
    return tuple(r["sentence"] for r in rows), values, sha256_file(p)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-7 or b.std() < 1e-7:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def cv_encoding_score(X: np.ndarray, y: np.ndarray, n_splits: int = 5, seed: int = 0, alphas=DEFAULT_ALPHAS) -> dict:
    """Mean over outer folds of Pearson r between RidgeCV predictions and y."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rs, chosen = [], []
    for train, test in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X):
        model = RidgeCV(alphas=alphas).fit(X[train], y[train])
        rs.append(_pearson(model.predict(X[test]), y[test]))
        chosen.append(float(model.alpha_))
    return {"r": float(np.mean(rs)), "fold_r": rs, "fold_se": float(np.std(rs, ddof=1) / np.sqrt(len(rs))),
            "alphas": chosen}


def find_file(ctx) -> Path:
    explicit = ctx.options.get("fmri.path")
    if explicit:
        return Path(explicit)
    if ctx.data_root is None:
        raise DataError("no data folder for fmri: set CONNECTOMES_DATA or pass --data-root")
    return Path(ctx.data_root) / "tuckute2024" / "bold_response_LH.csv"


def target(ctx) -> tuple[tuple[str, ...], np.ndarray, str, str]:
    path = find_file(ctx)
    sentences, values, sha = load_responses(str(path))
    roi = ctx.options.get("fmri.roi", DEFAULT_ROI)
    if roi not in values:
        raise DataError(f"ROI {roi!r} is not a column of {path}; choose one of {', '.join(values)}")
    n = len(sentences) if not ctx.limit else min(len(sentences), max(ctx.limit, 50))
    return sentences[:n], values[roi][:n], roi, sha


def sentence_features(lm, sentences) -> np.ndarray:
    """[N, n_layer+1, width] last-token states, each sentence encoded alone."""
    return lm.last_token_hidden([lm.tokenizer.encode(s) for s in sentences], desc="fmri features")


def _alphas(ctx):
    a = ctx.options.get("fmri.alphas")
    if a is None:
        return DEFAULT_ALPHAS
    return tuple(float(x) for x in (a.split(",") if isinstance(a, str) else a))


def run(lm, ctx) -> dict:
    sentences, y, roi, sha = target(ctx)
    feats = sentence_features(lm, sentences)
    alphas = _alphas(ctx)
    per_layer = [cv_encoding_score(feats[:, layer], y, alphas=alphas) for layer in range(feats.shape[1])]
    best = int(np.argmax([p["r"] for p in per_layer]))
    res = {
        "roi": roi,
        "per_layer": [{"layer": i, **p} for i, p in enumerate(per_layer)],
        "best_layer": best,
        "best_r": per_layer[best]["r"],
        "items": len(sentences),
        "variant": "last token per layer, sentence alone; RidgeCV (LOO alpha) inside 5-fold KFold(shuffle, seed 0); mean fold r",
        "data_sha256": sha,
    }
    if roi in NOISE_CEILING:
        res["noise_ceiling"] = NOISE_CEILING[roi]
        res["best_r_over_ceiling"] = per_layer[best]["r"] / NOISE_CEILING[roi]
    return res
