"""Which training cutoffs to learn from: a choice made on validation, not "all of them".

Early cutoffs, when the shop was younger and customers had weeks of history, describe another
population; learning from them can hurt as much as the extra rows help. ``choose_window`` tries
the newest 1, 2, 4, 8 ... fit cutoffs (and all of them) and keeps the count that scores best on
the validation cutoff.

The probe is honest in the same way as the test: it learns only from fit cutoffs whose label
window ends before the validation cutoff (``cutoff + horizon <= validation``), as the backtest
learns only from cutoffs whose labels end before the test cutoff. Two cheap, strong and
different learners score each candidate (plain LightGBM and logistic regression) and their mean
ROC-AUC decides; among candidates within ``tolerance`` of the best, the widest window wins,
since more data is the safer bet when validation cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from finetune.labels import labels_end_by

CANDIDATES: tuple[int, ...] = (1, 2, 4, 8, 16)


@dataclass
class WindowChoice:
    """The chosen number of newest fit cutoffs (None: all) and the evidence for it."""

    n_cutoffs: int | None
    available: int
    val_auc: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _probe_auc(train: pd.DataFrame, val: pd.DataFrame) -> float:
    from finetune.baselines import LightGBMPlain, LogRegBaseline

    y, y_val = train["label"].to_numpy(), val["label"].to_numpy()
    if len(np.unique(y)) < 2:
        return float("nan")
    aucs = []
    for model in (LightGBMPlain(), LogRegBaseline(cs=(1.0,))):
        model.fit(train, y)
        aucs.append(roc_auc_score(y_val, model.predict_proba(val)))
    return float(np.mean(aucs))


def choose_window(fit: pd.DataFrame, val: pd.DataFrame, horizon: int,
                  tolerance: float = 0.002) -> WindowChoice:
    """Choose how many newest fit cutoffs to train on, from validation alone (never the test)."""
    cutoffs = sorted(fit["cutoff"].unique())
    if val.empty or val["label"].nunique() < 2:
        return WindowChoice(None, len(cutoffs), reason="validation has one class: all cutoffs")
    first_val = val["cutoff"].min()
    pool = [c for c, ok in zip(cutoffs, labels_end_by(cutoffs, horizon, first_val)) if ok]
    if len(pool) < 2:
        return WindowChoice(None, len(cutoffs), reason=(
            f"{len(pool)} fit cutoff(s) with labels before validation: too few to choose, "
            "all cutoffs used"))
    counts = sorted({k for k in CANDIDATES if k < len(pool)} | {len(pool)})
    scores: dict[int, float] = {}
    for k in counts:
        scores[k] = _probe_auc(fit[fit["cutoff"].isin(pool[-k:])], val)
    valid = {k: v for k, v in scores.items() if not np.isnan(v)}
    if not valid:
        return WindowChoice(None, len(cutoffs), reason="no candidate had both classes")
    best = max(valid.values())
    chosen = max(k for k, v in valid.items() if v >= best - tolerance)
    label = {k: ("all" if k == len(pool) else str(k)) for k in counts}
    use: int | None = None if chosen == len(pool) else chosen
    return WindowChoice(use, len(cutoffs), {label[k]: round(v, 5) for k, v in scores.items()},
                        reason=(f"newest {label[chosen]} of {len(pool)} probe cutoffs: validation "
                                f"ROC-AUC {valid[chosen]:.4f} (best {best:.4f}, widest within "
                                f"{tolerance})"))


def apply_window(fit: pd.DataFrame, n_cutoffs: int | None) -> pd.DataFrame:
    """The fit snapshots of the newest ``n_cutoffs`` cutoffs (all of them for None)."""
    if n_cutoffs is None:
        return fit
    keep = sorted(fit["cutoff"].unique())[-n_cutoffs:]
    return fit[fit["cutoff"].isin(keep)].reset_index(drop=True)


__all__ = ["CANDIDATES", "WindowChoice", "apply_window", "choose_window"]
