"""The metrics every model is judged by: ranking, calibration and what a retention team acts on.

Lift and recall in the top 10% answer the team's real question ("if we call the riskiest tenth,
how many leavers do we reach?"); ECE and Brier say whether the probability can be read as one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata
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


def _rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count half): thousands of resamples in seconds."""
    pos = int(y.sum())
    neg = len(y) - pos
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def paired_bootstrap(y: np.ndarray, probs: Mapping[str, np.ndarray], reference: str | None = None,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """Percentile intervals for each model's AUC and ECE, and for its AUC gap to ``reference``.

    One set of customer resamples is shared by every model (paired), so the interval on a
    difference reflects how consistently one model ranks better on the same customers; two
    separate intervals would overlap even when the gap is real. ``p_better`` is the share of
    resamples where the model's AUC beats the reference's.
    """
    y = np.asarray(y, dtype=int)
    names = list(probs)
    if reference is not None and reference not in probs:
        raise ValueError(f"reference model {reference!r} is not among {names}")
    ps = {k: np.asarray(v, dtype=float) for k, v in probs.items()}
    rng = np.random.default_rng(seed)
    aucs = {k: [] for k in names}
    eces = {k: [] for k in names}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yb = y[idx]
        if yb.min() == yb.max():
            continue  # a resample with one class has no AUC
        for k in names:
            aucs[k].append(_rank_auc(yb, ps[k][idx]))
            eces[k].append(expected_calibration_error(yb, ps[k][idx]))
    if not aucs[names[0]]:
        raise ValueError("every resample had a single class: need churners and stayers")
    tail = (1 - level) / 2 * 100

    def interval(values: np.ndarray) -> list[float]:
        return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]

    out: dict[str, dict] = {}
    for k in names:
        out[k] = {"auc_ci": interval(np.array(aucs[k])), "ece_ci": interval(np.array(eces[k]))}
        if reference is not None and k != reference:
            diff = np.array(aucs[k]) - np.array(aucs[reference])
            out[k].update({"reference": reference,
                           "auc_diff": _rank_auc(y, ps[k]) - _rank_auc(y, ps[reference]),
                           "auc_diff_ci": interval(diff),
                           "p_better": float((diff > 0).mean())})
    return out
