"""Validation at the edge: clean data passes typed; bad data names file, rows, field, expectation."""

from __future__ import annotations

import pandas as pd
import pytest

from finetune.contract import EVENT_COLUMNS, DataError, validate_events


def frame(**overrides):
    base = {"customer_id": ["a", "b", "c"], "ts": ["2024-01-01", "2024-01-02 10:00", "2024-01-03"],
            "event": ["order", "review", "Ticket"], "amount": ["10.5", "", None],
            "rating": [None, "4", None], "text": [None, "\ufeff很好", "late"]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_table_is_typed_sorted_and_utc():
    events, report = validate_events(frame(), "f.csv")
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert str(events["ts"].dt.tz) == "UTC"
    assert events["event"].tolist() == ["order", "review", "ticket"]
    assert events.loc[1, "text"] == "很好"  # stray byte-order mark removed
    assert events["amount"].tolist()[0] == 10.5
    assert report.n_output == 3 and not report.dropped


def test_unparseable_timestamp_names_file_rows_and_field():
    bad = frame(ts=["2024-01-01", "not a date", "2024-13-45"])
    with pytest.raises(DataError) as exc:
        validate_events(bad, "shop.csv", row_offset=2, row_label="line")
    msg = str(exc.value)
    assert "shop.csv" in msg and "'ts'" in msg and "line(s): 3, 4" in msg
    assert "expected a date/time" in msg and "'not a date'" in msg
    assert exc.value.rows == [3, 4]


def test_unknown_event_type_lists_allowed_values():
    with pytest.raises(DataError, match=r"'event'.*row\(s\): 2.*one of order, return"):
        validate_events(frame(event=["order", "purchase", "visit"]), "x")


def test_wrong_types_and_out_of_range_rating():
    with pytest.raises(DataError, match=r"'amount'.*expected a number.*'ten'"):
        validate_events(frame(amount=["ten", None, None]), "x")
    with pytest.raises(DataError, match=r"'rating'.*1 to 5"):
        validate_events(frame(rating=[None, "7", None]), "x")


def test_missing_column_says_how_to_map():
    with pytest.raises(DataError, match="column mapping"):
        validate_events(frame().drop(columns=["event"]), "x")


def test_missing_ids_and_duplicates_are_dropped_and_counted():
    df = pd.concat([frame(), frame().iloc[[0]]], ignore_index=True)
    df.loc[2, "customer_id"] = "  "
    events, report = validate_events(df, "x")
    assert len(events) == 2
    assert report.dropped == {"no customer_id": 1, "exact duplicate": 1}
    assert "2 of 4 rows kept" in report.summary()


def test_float_text_ids_become_plain_ids():
    events, _ = validate_events(frame(customer_id=["17850.0", "17850", "12"]), "x")
    assert set(events["customer_id"]) == {"17850", "12"}


def test_drop_invalid_counts_instead_of_failing():
    events, report = validate_events(frame(ts=["2024-01-01", "nope", "2024-01-03"]), "x",
                                     drop_invalid=True)
    assert len(events) == 2 and report.dropped == {"invalid ts": 1}


def test_more_than_five_bad_rows_are_summarised():
    n = 12
    df = pd.DataFrame({"customer_id": ["a"] * n, "ts": ["bad"] * n, "event": ["order"] * n})
    with pytest.raises(DataError, match=r"12 row\(s\): 1, 2, 3, 4, 5 and 7 more"):
        validate_events(df, "x")
