"""fmri: how well a linear map of the model's states predicts the language network's responses to
1,000 sentences (Tuckute et al. 2024; method.md §6; reference-code-notes §11.2-11.3).

Each sentence is encoded alone; features are the last token's residual stream at every layer (0 =
embedding output, k = output of block k, before the final norm). Per layer, ridge regression with the
regularisation chosen by efficient leave-one-out CV on the training fold only (scikit-learn RidgeCV,
intercept, no standardisation of X or y, as the authors), inside KFold(5, shuffle=True,
random_state=0) over the items in item_id order; score = mean over the 5 folds of Pearson r between
predicted and measured responses (r = 0 when either is constant). Reported per layer, with the best
layer and, for ``lang_LH_netw``, r divided by the published noise ceiling 0.559.

Alpha grid: 10^-3 .. 10^15 in half-decades (37 values) instead of the authors' 10^-30 .. 10^29.
Below 10^-3 the penalty is lost in float64 rounding against feature eigenvalues of order 1 and more,
and only destabilises near-singular directions. Trained GPT-2 residual streams have a few dimensions
with activations in the thousands, so X'X over 800 sentences reaches ~1e10; 10^15 lies beyond, at the
predict-the-mean limit, which the authors' grid also reaches. Set the
option ``fmri.alphas`` (comma-separated) to use another grid, ``fmri.roi`` for another column,
``fmri.path`` for a responses file outside the data folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, UserError
from . import Metric, Option, TaskSpec, data_path, path_option
from .alignment_data import TUCKUTE_FILE, load_tuckute2024

DEFAULT_ROI = "lang_LH_netw"
NOISE_CEILING = {"lang_LH_netw": 0.559}  # split-half, 5-participant average (Tuckute et al. 2024)
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 15, 37))
MIN_ITEMS = 50  # --limit never goes below this: 5 folds need a few items each


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """As the authors' check_constant_y_ypred: r := 0 when either side is (numerically) constant."""
    if a.std() < 1e-7 or b.std() < 1e-7:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def cv_encoding_score(X: np.ndarray, y: np.ndarray, n_splits: int = 5, seed: int = 0,
                      alphas=DEFAULT_ALPHAS) -> dict:
    """Mean over shuffled KFold folds of Pearson r between RidgeCV (LOO alpha) predictions and y.

    Returns mean_r, fold_rs, fold_se (standard error over folds) and alphas (the one chosen per fold).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be [n_items, n_features] matching y; got {X.shape} and {y.shape}")
    rs, chosen = [], []
    for train, test in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X):
        # gcv_mode="svd": the same exact leave-one-out errors as the default eigen route, from one thin
        # SVD per fold instead of an O(n p^2) product per alpha (7x faster at 800 x 768)
        model = RidgeCV(alphas=alphas, gcv_mode="svd").fit(X[train], y[train])
        rs.append(_pearson(model.predict(X[test]), y[test]))
        chosen.append(float(model.alpha_))
    return {"mean_r": float(np.mean(rs)), "fold_rs": rs, "fold_se": float(np.std(rs, ddof=1) / np.sqrt(len(rs))),
            "alphas": chosen}


def parse_alphas(raw, key: str) -> tuple[float, ...]:
    if raw is None:
        return DEFAULT_ALPHAS
    try:
        alphas = tuple(float(a) for a in (raw.split(",") if isinstance(raw, str) else raw))
    except ValueError:
        alphas = ()
    if not alphas or min(alphas) <= 0:
        raise UserError(f"{key}={raw!r} must be comma-separated positive numbers, e.g. 0.1,1,10")
    return alphas


def responses_file(ctx) -> Path:
    p = data_path(ctx, SPEC)
    return p / TUCKUTE_FILE if p.is_dir() else p


def target(ctx) -> tuple[tuple[str, ...], np.ndarray, str, dict]:
    """(sentences, responses of the chosen ROI, ROI, data sha256) - the first ``limit`` items if set."""
    path = responses_file(ctx)
    data = load_tuckute2024(path)
    roi = str(ctx.option("fmri.roi"))
    if roi not in data.responses:
        raise DataError(f"ROI {roi!r} is not a column of {path}; set fmri.roi to one of {', '.join(data.responses)}")
    n = len(data.sentences) if not ctx.limit else min(len(data.sentences), max(ctx.limit, MIN_ITEMS))
    return data.sentences[:n], data.responses[roi][:n], roi, data.sha256


def sentence_features(lm, sentences) -> np.ndarray:
    """[N, n_layer+1, width] last-token states, each sentence encoded alone (no BOS)."""
    return lm.last_token_hidden([lm.tokenizer.encode(s) for s in sentences], desc="fmri sentences")


def run(lm, ctx) -> dict:
    sentences, y, roi, sha = target(ctx)
    alphas = ctx.option("fmri.alphas")
    feats = sentence_features(lm, sentences)
    per_layer = []
    for layer in range(feats.shape[1]):
        s = cv_encoding_score(feats[:, layer], y, alphas=alphas)
        per_layer.append({"layer": layer, "r": s["mean_r"], "fold_rs": s["fold_rs"], "fold_se": s["fold_se"],
                          "alphas": s["alphas"]})
    best = int(np.argmax([p["r"] for p in per_layer]))
    res = {
        "roi": roi,
        "per_layer": per_layer,
        "best_layer": best,
        "best_r": per_layer[best]["r"],
        "items": len(sentences),
        "alpha_grid": {"min": min(alphas), "max": max(alphas), "count": len(alphas)},
        "variant": "last token per layer (0 = embedding), each sentence alone; RidgeCV (LOO alpha) inside "
                   "KFold(5, shuffle, seed 0); mean over folds of Pearson r",
        "data_sha256": sha,
    }
    if roi in NOISE_CEILING:
        res["noise_ceiling"] = NOISE_CEILING[roi]
        res["best_r_over_ceiling"] = per_layer[best]["r"] / NOISE_CEILING[roi]
    return res


SPEC = TaskSpec(
    name="fmri", doc="Tuckute et al. 2024 sentence responses: ridge encoding per layer", run=run,
    data_dir="tuckute2024",
    options=(path_option("fmri", "tuckute2024", f"{TUCKUTE_FILE} or its folder"),
             Option("fmri.roi", DEFAULT_ROI, "response column (region of interest) to encode"),
             Option("fmri.alphas", None, "ridge penalties, comma-separated; default a log grid", parse_alphas)),
    metrics=(Metric("fMRI best-layer r", ("best_r",)),),
)
