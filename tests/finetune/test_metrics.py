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
