"""The metrics every model is judged by: ranking, calibration and what a retention team acts on.

Lift and recall in the top 10% answer the team's real question ("if we call the riskiest tenth,
how many leavers do we reach?"); ECE and Brier say whether the probability can be read as one.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean |accuracy - confidence| over equal-width probability bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)  # p == 1.0 goes in the last bin
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def top_fraction(y: np.ndarray, p: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """(lift, recall) among the ``fraction`` highest-risk customers; ties broken by position."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    k = max(1, math.ceil(fraction * len(y)))
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    precision = y[top].mean()
    lift = precision / base if base > 0 else float("nan")
    recall = y[top].sum() / y.sum() if y.sum() > 0 else float("nan")
    return float(lift), float(recall)


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold that maximises F1 (chosen on validation, then applied to test as is)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    fn = ys.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    # Only cut between distinct scores, so the threshold is achievable.
    last_of_run = np.r_[ps[1:] != ps[:-1], True]
    f1 = np.where(last_of_run, f1, -1.0)
    return float(ps[int(np.argmax(f1))])


def evaluate_predictions(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    lift, recall = top_fraction(y, p, 0.1)
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift10": lift,
        "recall10": recall,
        "f1": float(f1_score(y, (p >= threshold).astype(int), zero_division=0)),
        "threshold": float(threshold),
    }
