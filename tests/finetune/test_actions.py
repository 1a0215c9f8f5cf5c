"""The actions contract (clear errors, nothing silently changed) and outcome labels that read
only the horizon after each action (a leakage property, like the one for churn labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.actions import HOLDOUT, action_outcomes, validate_actions
from finetune.contract import DataError
from finetune.labels import ChurnDefinition
from finetune.loaders import load_actions
from tests.conftest import make_events

BASE = {"customer_id": ["A", "B"], "ts": ["2025-03-01 10:00", "2025-03-01 11:00"],
        "action_id": ["personal_coupon", "holdout"], "source": ["random", "random"]}


def test_valid_actions_are_typed_and_keyed():
    out, report = validate_actions(pd.DataFrame({**BASE, "cost": ["2.5", ""]}))
    assert list(out["action_id"]) == ["personal_coupon", HOLDOUT]
    assert str(out["ts"].dtype) == "datetime64[us, UTC]"
    assert out["cost"].iloc[0] == 2.5 and np.isnan(out["cost"].iloc[1])
    assert out["action_ref"].is_unique and report.n_output == 2


@pytest.mark.parametrize("change, field, expected", [
    ({"source": ["random", "manual"]}, "source", "one of random, agent, campaign"),
    ({"ts": ["2025-03-01", "yesterday-ish"]}, "ts", "a date/time"),
    ({"customer_id": ["A", None]}, "customer_id", "a customer id"),
    ({"action_id": ["Coupon 10%", "holdout"]}, "action_id", "a playbook action id"),
    ({"cost": ["-1", "0"]}, "cost", "a number >= 0"),
    ({"cost": ["1", "3"]}, "cost", "no cost for 'holdout'"),
])
def test_bad_rows_name_the_row_and_field(change, field, expected):
    with pytest.raises(DataError) as info:
        validate_actions(pd.DataFrame({**BASE, **change}))
    assert info.value.field == field and expected in str(info.value)


def test_unknown_action_and_missing_column():
    with pytest.raises(DataError, match="one of holdout, personal_coupon"):
        validate_actions(pd.DataFrame({**BASE, "action_id": ["free_car", "holdout"]}),
                         known_actions={"personal_coupon"})
    with pytest.raises(DataError, match="'source'"):
        validate_actions(pd.DataFrame({k: v for k, v in BASE.items() if k != "source"}))


def test_csv_errors_give_line_numbers_and_duplicates_are_counted(tmp_path):
    path = tmp_path / "actions.csv"
    path.write_text("customer_id,ts,action_id,source\nA,2025-03-01,personal_coupon,agent\n"
                    "A,2025-03-01,personal_coupon,agent\nB,2025-03-02,holdout,robot\n")
    with pytest.raises(DataError, match=r"line\(s\): 4"):
        load_actions(path)
    path.write_text("customer_id,ts,action_id,source\nA,2025-03-01,personal_coupon,agent\n"
                    "A,2025-03-01,personal_coupon,agent\n")
    out, report = load_actions(path)
    assert len(out) == 1 and report.dropped == {"exact duplicate": 1}


def _events():
    return make_events([("A", "2025-01-05", "order", 10.0), ("A", "2025-03-20", "order", 12.0),
                        ("B", "2025-02-01", "order", 9.0), ("B", "2025-03-01 09:00", "order", 5),
                        ("C", "2025-08-30", "visit", None)])


def test_outcome_is_an_order_after_the_action_within_the_horizon():
    actions = validate_actions(pd.DataFrame(BASE))[0]
    got = action_outcomes(_events(), actions, ChurnDefinition(horizon=30))
    # A ordered 19 days after; B's only order near the action came an hour before it.
    assert got.tolist() == [1.0, 0.0]
    late = validate_actions(pd.DataFrame({**BASE, "ts": ["2025-08-20", "2025-08-25"]}))[0]
    assert action_outcomes(_events(), late, ChurnDefinition(horizon=30)).isna().all()


@settings(max_examples=60, deadline=None)
@given(shift=st.integers(-200, 200), kind=st.sampled_from(["order", "return", "visit"]))
def test_outcome_reads_only_the_window_after_the_action(shift, kind):
    """An event outside (action, action + horizon) never changes an outcome."""
    definition = ChurnDefinition(horizon=30)
    events = _events()
    actions = validate_actions(pd.DataFrame(BASE))[0]
    before = action_outcomes(events, actions, definition)
    at = pd.Timestamp("2025-03-01 10:00", tz="UTC") + pd.Timedelta(days=shift)
    inside = pd.Timestamp("2025-03-01 10:00", tz="UTC") < at < pd.Timestamp(
        "2025-03-31 10:00", tz="UTC")
    extra = make_events([("B", at.strftime("%Y-%m-%d %H:%M"), kind, 1.0)])
    after = action_outcomes(pd.concat([events, extra], ignore_index=True), actions, definition)
    if not inside or kind != "order":
        # (an event past the data end can only make a pending window covered, never flip it)
        both = before.notna() & after.notna()
        assert (before[both] == after[both]).all()
    else:
        assert after.iloc[1] == 1.0
