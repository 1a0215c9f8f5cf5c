"""Our metrics agree with scikit-learn's and with brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from finetune.metrics import (
    best_f1_threshold,
    evaluate_predictions,
    expected_calibration_error,
    top_fraction,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 997)
    p = np.clip(0.35 * y + rng.random(997) * 0.65, 0, 1)
    return y, p


def test_matches_sklearn(scores):
    y, p = scores
    m = evaluate_predictions(y, p, threshold=0.5)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["f1"] == pytest.approx(f1_score(y, p >= 0.5))


def test_ece_matches_calibration_curve(scores):
    y, p = scores
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.clip((p * 10).astype(int), 0, 9), minlength=10)
    counts = counts[counts > 0]
    expected = np.sum(counts * np.abs(prob_true - prob_pred)) / len(y)
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_lift_and_recall_top_decile_brute_force(scores):
    y, p = scores
    k = int(np.ceil(0.1 * len(y)))
    top = np.argsort(-p)[:k]
    lift, recall = top_fraction(y, p)
    assert lift == pytest.approx(y[top].mean() / y.mean())
    assert recall == pytest.approx(y[top].sum() / y.sum())


def test_best_threshold_maximises_f1(scores):
    y, p = scores
    t = best_f1_threshold(y, p)
    best = max(f1_score(y, p >= c) for c in np.unique(p))
    assert f1_score(y, p >= t) == pytest.approx(best)


def test_rank_auc_matches_sklearn_with_ties():
    from finetune.metrics import _rank_auc

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 1)  # many ties
    assert _rank_auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_paired_bootstrap_intervals_and_gap(scores):
    from finetune.metrics import paired_bootstrap

    y, p = scores
    rng = np.random.default_rng(9)
    weak = np.clip(p + rng.normal(0, 0.4, len(p)), 0, 1)
    out = paired_bootstrap(y, {"strong": p, "weak": weak, "same": p}, reference="weak",
                           n_boot=300)
    for name, probs in (("strong", p), ("weak", weak)):
        lo, hi = out[name]["auc_ci"]
        assert lo < roc_auc_score(y, probs) < hi
        lo, hi = out[name]["ece_ci"]
        assert lo <= expected_calibration_error(y, probs) <= hi
    assert "auc_diff" not in out["weak"]  # the reference has no gap to itself
    gap = out["strong"]
    assert gap["auc_diff"] == pytest.approx(roc_auc_score(y, p) - roc_auc_score(y, weak))
    assert 0 < gap["auc_diff_ci"][0] < gap["auc_diff"] < gap["auc_diff_ci"][1]
    assert gap["p_better"] == 1.0
    # Paired: a copy of the strong model has the same gap in every resample.
    assert out["same"]["auc_diff_ci"] == pytest.approx(gap["auc_diff_ci"])
    # Same seed, same intervals; a noise-only gap straddles zero.
    assert paired_bootstrap(y, {"a": p}, n_boot=50) == paired_bootstrap(y, {"a": p}, n_boot=50)
    twin = paired_bootstrap(y, {"a": weak, "b": np.clip(weak + rng.normal(0, 0.01, len(p)), 0, 1)},
                            reference="a", n_boot=300)["b"]
    assert twin["auc_diff_ci"][0] < 0 < twin["auc_diff_ci"][1]


def test_paired_bootstrap_rejects_unknown_reference(scores):
    from finetune.metrics import paired_bootstrap

    y, p = scores
    with pytest.raises(ValueError, match="reference model 'lgbm'"):
        paired_bootstrap(y, {"a": p}, reference="lgbm", n_boot=10)


def test_paired_bootstrap_equals_resampling_the_customers_one_by_one():
    """The bootstrap weighs each customer by how often a resample drew them (no sort per
    model per resample); its intervals equal sorting each resample, ties and p = 1.0 included."""
    from finetune.metrics import _rank_auc, paired_bootstrap

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    probs = {"ties": np.round(rng.random(400) * 0.6 + 0.4 * y, 1),
             "smooth": np.clip(rng.random(400) * 0.7 + 0.3 * y, 0, 1)}
    out = paired_bootstrap(y, probs, reference="smooth", n_boot=200, seed=4)
    draws = np.random.default_rng(4)
    aucs, eces = {k: [] for k in probs}, {k: [] for k in probs}
    for _ in range(200):
        idx = draws.integers(0, len(y), len(y))
        for k, p in probs.items():
            aucs[k].append(_rank_auc(y[idx], p[idx]))
            eces[k].append(expected_calibration_error(y[idx], p[idx]))
    for k in probs:
        assert out[k]["auc_ci"] == pytest.approx(np.percentile(aucs[k], [2.5, 97.5]), abs=1e-12)
        assert out[k]["ece_ci"] == pytest.approx(np.percentile(eces[k], [2.5, 97.5]), abs=1e-12)
    diff = np.array(aucs["ties"]) - np.array(aucs["smooth"])
    assert out["ties"]["auc_diff_ci"] == pytest.approx(np.percentile(diff, [2.5, 97.5]), abs=1e-12)
