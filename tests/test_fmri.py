"""fmri: the cross-validated ridge score, the Tuckute 2024 file, and the task end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch

from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError, UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import fmri
from connectomes.evals.alignment_data import load_tuckute2024
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

SMALL_DATA = Path(__file__).parent / "fixtures" / "data"  # a few real files: tests that need little real data


def tiny_lm():
    torch.manual_seed(0)
    return ScoringLM(GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=64)),
                     load_tokenizer("bytes"), batch_size=64)


# ---------------------------------------------------------------- the score


def loo_ridge_predict(X_train, y_train, X_test, alphas):
    """Ridge with an unpenalised intercept; alpha by exact leave-one-out error from the hat matrix
    (e_i / (1 - H_ii)), first alpha on ties. Written from the textbook, not from scikit-learn."""
    mx, my = X_train.mean(0), y_train.mean()
    Xc, yc = X_train - mx, y_train - my
    n, p = Xc.shape
    best = None
    for a in alphas:
        inv = np.linalg.solve(Xc.T @ Xc + a * np.eye(p), np.eye(p))
        H = Xc @ inv @ Xc.T + 1.0 / n
        loo = np.mean(((yc - H @ yc + 0.0) / (1 - np.diag(H))) ** 2)
        if best is None or loo < best[0] - 1e-12 * abs(best[0]):
            best = (loo, a, inv @ Xc.T @ yc)
    _, alpha, w = best
    return (X_test - mx) @ w + my, alpha


def textbook_cv(X, y, alphas, seed=0):
    """KFold(5, shuffle, seed) written out: the same permutation scikit-learn uses, equal-ish folds."""
    idx = np.random.RandomState(seed).permutation(len(y))
    sizes = np.full(5, len(y) // 5)
    sizes[: len(y) % 5] += 1
    rs, chosen, start = [], [], 0
    for size in sizes:
        test = np.sort(idx[start:start + size])
        train = np.setdiff1d(np.arange(len(y)), test)
        pred, alpha = loo_ridge_predict(X[train], y[train], X[test], alphas)
        rs.append(np.corrcoef(pred, y[test])[0, 1])
        chosen.append(alpha)
        start += size
    return float(np.mean(rs)), chosen


def test_score_matches_a_textbook_computation_on_a_linear_relation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 12))
    y = X @ rng.normal(size=12) + 0.5 * rng.normal(size=203)
    alphas = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    res = fmri.cv_encoding_score(X, y, partitions=1, alphas=alphas)
    mean_r, chosen = textbook_cv(X, y, alphas)
    assert res["mean_r"] > 0.9
    assert res["mean_r"] == pytest.approx(mean_r, abs=1e-9)
    assert res["alphas"] == [chosen] and len(res["fold_rs"][0]) == 5
    assert res["se"] is None  # one partition: no spread to estimate


def test_repeated_cv_matches_a_loop_over_partitions():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(97, 15))
    y = X @ rng.normal(size=15) + 2.0 * rng.normal(size=97)
    alphas = (0.1, 1.0, 10.0, 100.0)
    res = fmri.cv_encoding_score(X, y, partitions=3, seed=7, alphas=alphas)
    hand = [textbook_cv(X, y, alphas, seed=7 + p) for p in range(3)]  # partition p: KFold seed 7 + p
    means = [m for m, _ in hand]
    assert res["partition_rs"] == pytest.approx(means, abs=1e-9)
    assert res["mean_r"] == pytest.approx(np.mean(means), abs=1e-9)
    assert res["se"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(3), abs=1e-9)
    assert res["alphas"] == [a for _, a in hand] and np.shape(res["fold_rs"]) == (3, 5)
    flat = [a for _, a in hand for a in a]
    assert res["alpha_edge"] == {"lowest": flat.count(0.1), "highest": flat.count(100.0), "folds": 15}
    assert res["alpha_edge"]["lowest"] + res["alpha_edge"]["highest"] < 15  # the grid brackets the choice


def test_regularisation_is_chosen_per_fold_from_the_grid():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 80))  # nearly as many features as items: a strong penalty wins
    y = X[:, 0] + rng.normal(size=100)
    res = fmri.cv_encoding_score(X, y)
    chosen = np.ravel(res["alphas"])
    assert all(a in fmri.DEFAULT_ALPHAS for a in chosen) and len(chosen) == 25  # 5 partitions x 5 folds
    assert chosen.min() > 1.0


def test_default_grid_reaches_the_small_alphas_of_small_features():
    # small features (s.d. 0.001, X'X eigenvalues near 1e-4 * 400): the Bayes ridge optimum noise
    # variance / weight variance = 1 / 100^2 = 1e-4 lies below a grid starting at 1e-3 (signal = noise)
    rng = np.random.default_rng(6)
    X = 0.001 * rng.normal(size=(400, 100))
    y = X @ (100 * rng.normal(size=100)) + rng.normal(size=400)
    res = fmri.cv_encoding_score(X, y, partitions=2)
    assert res["alpha_edge"]["lowest"] == res["alpha_edge"]["highest"] == 0
    assert np.median(res["alphas"]) < 1e-3
    cut = fmri.cv_encoding_score(X, y, partitions=2, alphas=[a for a in fmri.DEFAULT_ALPHAS if a >= 1e-3])
    assert cut["alpha_edge"]["lowest"] > 5 and cut["mean_r"] < res["mean_r"]


def test_score_near_zero_on_shuffled_targets():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 20))
    y = rng.permutation(X @ rng.normal(size=20))
    assert abs(fmri.cv_encoding_score(X, y)["mean_r"]) < 0.15


def test_constant_features_score_zero():
    y = np.random.default_rng(0).normal(size=50)
    res = fmri.cv_encoding_score(np.zeros((50, 3)), y)
    assert res["mean_r"] == 0.0 and res["fold_rs"] == [[0.0] * 5] * 5 and res["se"] == 0.0


def test_score_is_deterministic_and_the_seed_changes_the_folds():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 10))
    y = X[:, 0] + rng.normal(size=120)
    assert fmri.cv_encoding_score(X, y) == fmri.cv_encoding_score(X, y)
    assert fmri.cv_encoding_score(X, y, seed=1)["fold_rs"] != fmri.cv_encoding_score(X, y)["fold_rs"]
    # partitions 1.. of seed 0 are partitions 0.. of seed 1
    later = fmri.cv_encoding_score(X, y, partitions=3)["fold_rs"][1:]
    assert fmri.cv_encoding_score(X, y, seed=1, partitions=2)["fold_rs"] == later


# ---------------------------------------------------------------- the data file


def test_tuckute2024_file():
    data = load_tuckute2024(SMALL_DATA / "tuckute2024" / "bold_response_LH.csv")  # the real file (tests/fixtures/data)
    assert len(data.sentences) == 1000 and len(set(data.sentences)) == 1000
    assert data.item_ids[:4] == ("B.1", "B.10", "B.100", "B.1000")  # pandas' sorted item_id
    assert data.sentences[0] == "Taste that fowl and those fish."
    assert data.responses["lang_LH_netw"][0] == pytest.approx(0.421033246)
    assert data.responses["lang_LH_netw"].max() == pytest.approx(1.28142508)  # README / brain-score's check
    assert set(data.responses) == {"lang_LH_AntTemp", "lang_LH_IFG", "lang_LH_IFGorb", "lang_LH_MFG",
                                   "lang_LH_PostTemp", "lang_LH_netw"}
    assert data.sha256 == {"bold_response_LH.csv": "7b794f7efbd2abd76012d629e4f7a19bb758bb0a85a1fae8c50e8fadd52f1e0f"}


def test_bad_response_files(tmp_path):
    path = tmp_path / "bold_response_LH.csv"
    with pytest.raises(DataError, match="bold_response_LH.csv is missing"):
        load_tuckute2024(path)
    path.write_text("item_id,text,lang_LH_netw\nB.1,Hi there.,0.1\n")
    with pytest.raises(DataError, match="lacks the column.* sentence"):
        load_tuckute2024(path)
    path.write_text("item_id,sentence,lang_LH_netw\nB.1,Hi there.,0.1\nB.2,Bye now.,n/a\n")
    with pytest.raises(DataError, match=r"bold_response_LH.csv:3: lang_LH_netw 'n/a' is not a number"):
        load_tuckute2024(path)
    path.write_text("item_id,sentence,lang_LH_netw\nB.1,Hi there.,0.1\nB.1,Bye now.,0.2\n")
    with pytest.raises(DataError, match="item_id values repeat"):
        load_tuckute2024(path)


# ---------------------------------------------------------------- the task


def test_sentences_are_encoded_alone():
    lm = tiny_lm()
    both = fmri.sentence_features(lm, ["Hi there.", "A much longer sentence here."])
    alone = fmri.sentence_features(lm, ["Hi there."])
    assert both.shape == (2, 3, 32)
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)


def test_fmri_end_to_end_uses_every_sentence_whatever_the_limit(synthetic_eval_root):
    lm = tiny_lm()
    res = fmri.run(lm, EvalContext(data_root=synthetic_eval_root, limit=5))
    assert res["items"] == 120 and res["roi"] == "lang_LH_netw" and (res["partitions"], res["folds"]) == (5, 5)
    assert [p["layer"] for p in res["per_layer"]] == [0, 1, 2]
    best = max(res["per_layer"], key=lambda p: p["r"])
    assert res["best_layer"] == best["layer"] and res["best_r"] == best["r"] and res["best_se"] == best["se"]
    assert best["r"] == pytest.approx(np.mean(best["partition_rs"])) and len(best["partition_rs"]) == 5
    assert res["best_r_over_ceiling"] == pytest.approx(res["best_r"] / 0.559)
    assert all(p["alpha_edge"]["folds"] == 25 for p in res["per_layer"])
    other = fmri.run(lm, EvalContext(data_root=synthetic_eval_root, limit=60, options={
        "fmri.roi": "lang_LH_IFG", "fmri.alphas": "1,10", "fmri.partitions": "2"}))
    assert other["roi"] == "lang_LH_IFG" and "noise_ceiling" not in other and other["items"] == 120
    assert other["alpha_grid"] == {"min": 1.0, "max": 10.0, "count": 2} and other["partitions"] == 2
    assert all(len(p["partition_rs"]) == 2 for p in other["per_layer"])


def test_bad_options(synthetic_eval_root, tmp_path):
    lm = tiny_lm()
    with pytest.raises(DataError, match="'V1' is not a column .* lang_LH_AntTemp, .*lang_LH_netw"):
        fmri.run(lm, EvalContext(data_root=synthetic_eval_root, limit=50, options={"fmri.roi": "V1"}))
    with pytest.raises(UserError, match="fmri.alphas"):
        fmri.run(lm, EvalContext(data_root=synthetic_eval_root, limit=50, options={"fmri.alphas": "1,-2"}))
    for bad in ("0", "two", "2.5"):
        with pytest.raises(UserError, match="fmri.partitions"):
            fmri.run(lm, EvalContext(data_root=synthetic_eval_root, options={"fmri.partitions": bad}))
    with pytest.raises(DataError, match=r"tuckute2024 is missing; put .*bold_response_LH.csv there"):
        fmri.run(lm, EvalContext(data_root=tmp_path))
