"""Labels look only at [cutoff, cutoff + horizon); the backtest never lets training see the test."""

from __future__ import annotations

import pandas as pd
import pytest

from finetune.labels import (
    DAY,
    ChurnDefinition,
    churn_labels,
    eligible_customers,
    plan_backtest,
)
from tests.conftest import make_events

EVENTS = make_events([
    ("stay", "2024-01-05", "order"), ("stay", "2024-03-02", "order"),
    ("leave", "2024-01-10", "order"), ("leave", "2024-02-20", "visit"),
    ("old", "2022-06-01", "order"), ("old", "2024-03-05", "visit"),
    ("quit", "2024-02-01", "order"), ("quit", "2024-02-15", "cancel"),
    ("quit2", "2024-02-01", "order"), ("quit2", "2024-03-10", "cancel"),
    ("end", "2024-06-30 23:00", "visit"),
])
CUTOFF = pd.Timestamp("2024-03-01", tz="UTC")


def test_eligibility_needs_an_order_in_the_lookback():
    ids = eligible_customers(EVENTS, CUTOFF, ChurnDefinition(horizon=30))
    assert list(ids) == ["leave", "quit", "quit2", "stay"]  # 'old' ordered > 365 days ago


def test_min_prior_counts_activity_before_cutoff():
    ids = eligible_customers(EVENTS, CUTOFF, ChurnDefinition(min_prior=2))
    assert list(ids) == []


def test_inactivity_label_uses_the_horizon_window_only():
    d = ChurnDefinition(horizon=30)
    ids = eligible_customers(EVENTS, CUTOFF, d)
    labels = churn_labels(EVENTS, CUTOFF, ids, d)
    assert labels.to_dict() == {"leave": 1, "quit": 1, "quit2": 1, "stay": 0}


def test_explicit_label_and_already_cancelled_customers():
    d = ChurnDefinition(kind="explicit", horizon=30)
    ids = eligible_customers(EVENTS, CUTOFF, d)
    assert "quit" not in ids  # cancelled before the cutoff: already gone
    labels = churn_labels(EVENTS, CUTOFF, ids, d)
    assert labels.to_dict() == {"leave": 0, "quit2": 1, "stay": 0}


def test_label_refuses_a_window_past_the_data():
    with pytest.raises(ValueError, match="runs past the end of the data"):
        churn_labels(EVENTS, pd.Timestamp("2024-06-15", tz="UTC"), pd.Index(["stay"]),
                     ChurnDefinition(horizon=30))


def test_backtest_protocol():
    events = make_events([("a", f"2023-01-{d:02d}", "order") for d in range(1, 29)]
                         + [("a", "2024-12-31 18:00", "order")])
    d = ChurnDefinition(horizon=90)
    plan = plan_backtest(events, d, step=30)
    assert plan.test_cutoff == pd.Timestamp("2025-01-01", tz="UTC") - 90 * DAY
    assert plan.val_cutoffs == [plan.test_cutoff - 90 * DAY]
    assert all(c + 90 * DAY <= plan.test_cutoff for c in plan.train_cutoffs)
    assert plan.test_cutoff not in plan.train_cutoffs
    assert all(b - a == 30 * DAY for a, b in zip(plan.train_cutoffs, plan.train_cutoffs[1:]))
    assert plan.fit_cutoffs[0] >= plan.data_start + 30 * DAY


def test_backtest_explains_too_little_data():
    events = make_events([("a", "2024-01-01", "order"), ("a", "2024-05-01", "order")])
    with pytest.raises(ValueError, match="shorter horizon"):
        plan_backtest(events, ChurnDefinition(horizon=90))
