"""The no-leakage property: nothing at or after a cutoff changes that snapshot's features.

Hypothesis draws random histories and random future events (new ones, and edits of existing
ones moved or changed after the cutoff); the snapshot must not move.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.contract import EVENT_TYPES, validate_events
from finetune.features import compute_features
from finetune.labels import ChurnDefinition, eligible_customers

START = pd.Timestamp("2024-01-01", tz="UTC")
CUTOFF = pd.Timestamp("2024-07-01", tz="UTC")
IDS = ["a", "b", "c"]

event_st = st.fixed_dictionaries({
    "customer_id": st.sampled_from(IDS),
    "minutes": st.integers(0, 365 * 24 * 60),
    "event": st.sampled_from(EVENT_TYPES),
    "amount": st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),
    "rating": st.one_of(st.none(), st.integers(1, 5)),
})


def to_events(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([{**r, "ts": START + pd.Timedelta(minutes=r["minutes"])} for r in rows],
                         columns=["customer_id", "minutes", "event", "amount", "rating", "ts"])
    events, _ = validate_events(frame.drop(columns="minutes"), "hypothesis")
    return events


def snapshot(events: pd.DataFrame, definition: ChurnDefinition) -> pd.DataFrame:
    ids = eligible_customers(events, CUTOFF, definition)
    return compute_features(events, CUTOFF, ids, definition)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(event_st, min_size=1, max_size=40),
       future=st.lists(event_st, max_size=20),
       edits=st.lists(st.tuples(st.integers(0, 39), st.floats(0, 1), st.sampled_from(EVENT_TYPES)),
                      max_size=5))
def test_events_at_or_after_cutoff_change_nothing(history, future, edits):
    definition = ChurnDefinition(horizon=60, lookback=120)
    offset = int((CUTOFF - START).total_seconds() // 60)
    past = [r for r in history if r["minutes"] < offset]
    later = [r for r in history if r["minutes"] >= offset]
    base = to_events(past + later)
    before = snapshot(base, definition)

    # Add future events (including exactly at the cutoff) and edit the ones already after it.
    extra = [{**r, "minutes": offset + r["minutes"] % (200 * 24 * 60)} for r in future]
    extra.append({"customer_id": "a", "minutes": offset, "event": "order", "amount": 99.0,
                  "rating": 1})
    edited = list(later)
    for idx, shift, kind in edits:
        if edited:
            i = idx % len(edited)
            edited[i] = {**edited[i], "event": kind, "amount": 1e6,
                         "minutes": offset + int(shift * 100 * 24 * 60)}
    after = snapshot(to_events(past + edited + extra), definition)
    pd.testing.assert_frame_equal(before, after)


def test_features_change_when_history_changes():
    """The property above must be able to fail: an earlier event does move the snapshot."""
    definition = ChurnDefinition()
    rows = [{"customer_id": "a", "minutes": 1000, "event": "order", "amount": 5.0, "rating": None}]
    base = snapshot(to_events(rows), definition)
    rows.append({"customer_id": "a", "minutes": 2000, "event": "order", "amount": 5.0,
                 "rating": None})
    assert not snapshot(to_events(rows), definition).equals(base)
