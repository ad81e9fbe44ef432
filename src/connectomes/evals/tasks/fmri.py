"""fmri: how well a linear map of the model's states predicts the language network's responses to
1,000 sentences (Tuckute et al. 2024; docs/method.md §6; docs/method.md §7).

Each sentence is encoded alone; features are the last token's residual stream at every layer (0 =
embedding output, k = output of block k, before the final norm). Per layer, ridge regression with the
regularisation chosen by efficient leave-one-out CV on the training fold only (scikit-learn RidgeCV,
intercept, no standardisation of X or y, as the authors), inside repeated K-fold over the items in
item_id order: partition p = 0..P-1 is KFold(5, shuffle=True, random_state=p) (the authors' single
split is p = 0). A partition's score is the mean over its 5 folds of Pearson r between predicted and
measured responses (r = 0 when either is constant); the score is the mean over partitions, with its
standard error over partitions (the folds of one partition share training items, so they are not
independent replicates; partitions are closer to it). P = 5 by default (option ``fmri.partitions``).
Each fold's chosen alpha is kept, and the folds whose alpha is the grid's lowest or highest value are
counted: there the grid, not the data, decided. Reported per layer, with the best layer (on the mean
over partitions) and, for ``lang_LH_netw``, r divided by the published noise ceiling 0.559.
All 1,000 sentences are always used: the item limit applies to the accuracy tasks only.

Alpha grid: 10^-10 .. 10^15 in half-decades (51 values) instead of the authors' 10^-30 .. 10^29 in
decades. The lower end follows the smallest feature scale met in practice: an untrained model (weights
of s.d. 0.02) gives last-token states whose X'X has eigenvalues of order 1 and below, and leave-one-out
picks alphas near 10^-4 there; a grid starting at 10^-3 had most folds on its lowest value and lost
up to two thirds of r (demo model at step 0, layer 1: 0.049 instead of 0.158), biasing the step-0 floor
down. Far below the features' eigenvalues the penalty is lost in float64 rounding and leave-one-out
does not choose it, so the authors' 20 further decades add nothing but cost. At the top, trained GPT-2
residual streams have a few dimensions with activations in the thousands, so X'X over 800 sentences
reaches ~1e10; 10^15 lies beyond, at the predict-the-mean limit, which the authors' grid also
reaches. Every result counts the folds whose alpha is the grid's lowest or highest value.
Options: ``fmri.partitions`` (number of K-fold partitions), ``fmri.alphas`` (comma-separated grid),
``fmri.roi`` (another column), ``fmri.path`` (a responses file outside the data folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import DataError, UserError
from ..alignment_data import TUCKUTE_FILE, load_tuckute2024
from ..context import data_path
from ..registry import Metric, Option, TaskSpec, integer, path_option

DEFAULT_ROI = "lang_LH_netw"
NOISE_CEILING = {"lang_LH_netw": 0.559}  # split-half, 5-participant average (Tuckute et al. 2024)
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-10, 15, 51))
FOLDS = 5
DEFAULT_PARTITIONS = 5


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """As the authors' check_constant_y_ypred: r := 0 when either side is (numerically) constant."""
    if a.std() < 1e-7 or b.std() < 1e-7:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _partition(X: np.ndarray, y: np.ndarray, n_splits: int, seed: int, alphas) -> tuple[list, list]:
    """Pearson r and chosen alpha per fold of KFold(n_splits, shuffle=True, random_state=seed)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    rs, chosen = [], []
    for train, test in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X):
        # gcv_mode="svd": the same exact leave-one-out errors as the default eigen route, from one thin
        # SVD per fold instead of an O(n p^2) product per alpha (7x faster at 800 x 768)
        model = RidgeCV(alphas=alphas, gcv_mode="svd").fit(X[train], y[train])
        rs.append(_pearson(model.predict(X[test]), y[test]))
        chosen.append(float(model.alpha_))
    return rs, chosen


def cv_encoding_score(X: np.ndarray, y: np.ndarray, n_splits: int = FOLDS, partitions: int = DEFAULT_PARTITIONS,
                      seed: int = 0, alphas=DEFAULT_ALPHAS) -> dict:
    """Repeated K-fold Pearson r of RidgeCV (LOO alpha) predictions; partition p uses seed + p.

    Returns mean_r (mean over partitions of the per-partition mean over folds), se (standard error over
    partitions; None for one partition), partition_rs [P], fold_rs and alphas [P][K], and alpha_edge:
    how many of the P x K folds chose the grid's lowest and highest alpha.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be [n_items, n_features] matching y; got {X.shape} and {y.shape}")
    fold_rs, chosen = zip(*(_partition(X, y, n_splits, seed + p, alphas) for p in range(partitions)))
    partition_rs = [float(np.mean(rs)) for rs in fold_rs]
    flat = np.concatenate(chosen)
    return {"mean_r": float(np.mean(partition_rs)),
            "se": float(np.std(partition_rs, ddof=1) / np.sqrt(partitions)) if partitions > 1 else None,
            "partition_rs": partition_rs, "fold_rs": [list(r) for r in fold_rs], "alphas": [list(a) for a in chosen],
            "alpha_edge": {"lowest": int((flat == min(alphas)).sum()), "highest": int((flat == max(alphas)).sum()),
                           "folds": int(flat.size)}}


def encoding_entry(s: dict) -> dict:
    """The fields of a cv_encoding_score result that a task reports (mean_r is reported as r)."""
    return {"r": s["mean_r"], **{k: s[k] for k in ("se", "partition_rs", "fold_rs", "alphas", "alpha_edge")}}


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
    """(sentences, responses of the chosen ROI, ROI, data sha256): every item, whatever ``ctx.limit``."""
    path = responses_file(ctx)
    data = load_tuckute2024(path)
    roi = str(ctx.option("fmri.roi"))
    if roi not in data.responses:
        raise DataError(f"ROI {roi!r} is not a column of {path}; set fmri.roi to one of {', '.join(data.responses)}")
    return data.sentences, data.responses[roi], roi, data.sha256


def sentence_features(lm, sentences) -> np.ndarray:
    """[N, n_layer+1, width] last-token states, each sentence encoded alone (no BOS)."""
    return lm.last_token_hidden([lm.tokenizer.encode(s) for s in sentences], desc="fmri sentences")


def run(lm, ctx) -> dict:
    sentences, y, roi, sha = target(ctx)
    alphas, partitions = ctx.option("fmri.alphas"), ctx.option("fmri.partitions")
    feats = sentence_features(lm, sentences)
    per_layer = [{"layer": layer, **encoding_entry(cv_encoding_score(feats[:, layer], y, partitions=partitions,
                                                                     alphas=alphas))}
                 for layer in range(feats.shape[1])]
    best = int(np.argmax([p["r"] for p in per_layer]))  # on the mean over partitions
    res = {
        "roi": roi,
        "per_layer": per_layer,
        "best_layer": best,
        "best_r": per_layer[best]["r"],
        "best_se": per_layer[best]["se"],
        "items": len(sentences),
        "partitions": partitions,
        "folds": FOLDS,
        "alpha_grid": {"min": min(alphas), "max": max(alphas), "count": len(alphas)},
        "variant": f"last token per layer (0 = embedding), each sentence alone; RidgeCV (LOO alpha) inside "
                   f"KFold({FOLDS}, shuffle, random_state=p) for partitions p = 0..{partitions - 1}; mean over "
                   "folds of Pearson r, then mean +- s.e. over partitions",
        "data_sha256": sha,
        "selection": {"selection": "all", "n": len(sentences), "of": len(sentences), "unit": "sentences"},
    }
    if roi in NOISE_CEILING:
        res["noise_ceiling"] = NOISE_CEILING[roi]
        res["best_r_over_ceiling"] = per_layer[best]["r"] / NOISE_CEILING[roi]
    return res


def describe_sentences(result: dict, metric: Metric) -> str:
    """n and selection of an encoding score: every sentence, in repeated K-fold cross-validation (also langloc's)."""
    items = result.get("items", result.get("fmri_items"))
    if items is not None and "partitions" in result:
        return f"all {items:,} sentences, repeated {result['partitions']}×{result.get('folds', 5)}-fold CV"
    # a result from before the protocol recorded how items were chosen: say so rather than guess
    return f"{items:,} items, selection not recorded" if isinstance(items, int) else "not recorded"


def with_alpha_counts(found: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Encoding entries that count their edge alphas (results from before repeated cross-validation do not)."""
    return [(name, e) for name, e in found if isinstance(e, dict) and "alpha_edge" in e]


def encoding(result: dict) -> list[tuple[str, dict]]:
    """The best layer's encoding score, for the report's cross-validation table."""
    if not result.get("per_layer"):
        return []
    return with_alpha_counts([(f"fMRI best layer ({result.get('roi')})", result["per_layer"][result["best_layer"]])])


SPEC = TaskSpec(
    name="fmri", doc="Tuckute et al. 2024 sentence responses: ridge encoding per layer", run=run,
    data_dir="tuckute2024",
    options=(path_option("fmri", "tuckute2024", f"{TUCKUTE_FILE} or its folder"),
             Option("fmri.roi", DEFAULT_ROI, "response column (region of interest) to encode"),
             Option("fmri.alphas", None, "ridge penalties, comma-separated; default 10^-10..10^15 in half-decades",
                    parse_alphas),
             Option("fmri.partitions", DEFAULT_PARTITIONS, f"K-fold partitions (seeds 0..n-1) of the {FOLDS}-fold "
                    "cross-validation; also used by langloc", integer(1))),
    metrics=(Metric("fMRI best-layer r", ("best_r",)),),
    title="fMRI language network", default=True, describe=describe_sentences, encoding=encoding, layers=("per_layer",),
)
