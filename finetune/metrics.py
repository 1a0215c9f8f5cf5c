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

N_BINS = 10


def _bins(p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Equal-width probability bins; p == 1.0 goes in the last one."""
    return np.clip((np.asarray(p, dtype=float) * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    """Weighted mean |accuracy - confidence| over equal-width probability bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = _bins(p, n_bins)
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
    # A resample is a weight per customer (how often it was drawn): every model's AUC and ECE
    # then come from sums by tie group and by bin, linear in the customers, instead of a sort
    # per model per resample (35.5 s -> 2.3 s for 10 models x 21,747 customers, equal to 1e-12).
    prepared = {k: (np.unique(p, return_inverse=True)[1], _bins(p)) for k, p in ps.items()}
    y_float = y.astype(float)
    rng = np.random.default_rng(seed)
    aucs: dict[str, list[float]] = {k: [] for k in names}
    eces: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(float)
        w_pos = w * y_float
        w_neg = w - w_pos
        n_pos, n_neg = w_pos.sum(), w_neg.sum()
        if n_pos == 0 or n_neg == 0:
            continue  # a resample with one class has no AUC
        for k in names:
            groups, bins = prepared[k]
            pos = np.bincount(groups, weights=w_pos)
            neg = np.bincount(groups, weights=w_neg)
            below = np.cumsum(neg) - neg  # drawn stayers scored strictly lower (ties: half)
            aucs[k].append(float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg)))
            drawn_y = np.bincount(bins, weights=w_pos, minlength=N_BINS)
            drawn_p = np.bincount(bins, weights=w * ps[k], minlength=N_BINS)
            eces[k].append(float(np.abs(drawn_y - drawn_p).sum() / len(y)))
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
