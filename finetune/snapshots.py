"""Snapshots: one row per (customer, cutoff) with features and the honest label."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from finetune.features import FEATURE_COLUMNS, compute_features
from finetune.labels import (
    BacktestPlan,
    ChurnDefinition,
    as_cutoff,
    churn_labels,
    eligible_customers,
)


def build_snapshots(events: pd.DataFrame, cutoffs: Iterable[pd.Timestamp],
                    definition: ChurnDefinition, split: str = "",
                    on_cutoff: Callable[[pd.Timestamp], None] | None = None) -> pd.DataFrame:
    """Columns: customer_id, cutoff, split, label, then ``FEATURE_COLUMNS``."""
    frames = []
    for cutoff in cutoffs:
        cutoff = as_cutoff(cutoff)
        ids = eligible_customers(events, cutoff, definition)
        feats = compute_features(events, cutoff, ids, definition)
        labels = churn_labels(events, cutoff, feats.index, definition)
        frame = feats.reset_index()
        frame.insert(1, "cutoff", cutoff)
        frame.insert(2, "split", split)
        frame.insert(3, "label", labels.to_numpy())
        frames.append(frame)
        if on_cutoff:
            on_cutoff(cutoff)
    if not frames:
        columns = ["customer_id", "cutoff", "split", "label", *FEATURE_COLUMNS]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def backtest_snapshots(events: pd.DataFrame, plan: BacktestPlan, definition: ChurnDefinition,
                       on_cutoff: Callable[[pd.Timestamp], None] | None = None,
                       with_test: bool = True) -> pd.DataFrame:
    """All snapshots of a backtest, with ``split`` set to fit, val or test (``with_test=False``
    for a production plan, whose test cutoff has no labels yet)."""
    parts = [build_snapshots(events, plan.fit_cutoffs, definition, "fit", on_cutoff),
             build_snapshots(events, plan.val_cutoffs, definition, "val", on_cutoff)]
    if with_test:
        parts.append(build_snapshots(events, [plan.test_cutoff], definition, "test", on_cutoff))
    return pd.concat(parts, ignore_index=True)
