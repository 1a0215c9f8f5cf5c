"""Loaders read CSV, Parquet and SQL with a user's own column names; writes are all-or-nothing."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from finetune.contract import DataError
from finetune.loaders import ColumnMapping, load_events, load_events_sql, write_events

EXPORT = pd.DataFrame({"CustomerID": ["7", "7", "8"],
                       "When": ["2024-02-01 10:00", "2024-03-01", "2024-02-05"],
                       "Kind": ["purchase", "purchase", "complaint"], "Total": [9.5, 3, None]})
MAPPING = ["customer_id=CustomerID", "ts=When", "event=Kind", "amount=Total",
           "event:order=purchase", "event:ticket=complaint"]


def test_csv_with_column_and_event_mapping(tmp_path):
    path = tmp_path / "export.csv"
    EXPORT.to_csv(path, index=False)
    events, report = load_events(path, ColumnMapping.parse(MAPPING))
    assert events["event"].astype(str).tolist() == ["order", "order", "ticket"]
    assert events["amount"].tolist()[:2] == [9.5, 3.0]
    assert report.n_output == 3


def test_mapping_file_and_parquet(tmp_path):
    path = tmp_path / "export.parquet"
    EXPORT.to_parquet(path)
    mfile = tmp_path / "map.json"
    mfile.write_text('{"columns": {"customer_id": "CustomerID", "ts": "When", "event": "Kind"},'
                     ' "event_values": {"purchase": "order", "complaint": "ticket"}}')
    events, _ = load_events(path, ColumnMapping.parse(file=mfile))
    assert len(events) == 3


def test_sqlite_through_sqlalchemy(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        EXPORT.to_sql("events", conn, index=False)
    events, _ = load_events_sql(f"sqlite:///{db}", "SELECT * FROM events WHERE Total IS NOT NULL",
                                ColumnMapping.parse(MAPPING))
    assert events["customer_id"].tolist() == ["7", "7"]


def test_csv_errors_report_file_lines(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("customer_id,ts,event\na,2024-01-01,order\nb,yesterday,order\n")
    with pytest.raises(DataError, match=r"bad.csv: field 'ts' is invalid in 1 line\(s\): 3"):
        load_events(path)


def test_mapping_to_absent_column_is_explained(tmp_path):
    path = tmp_path / "e.csv"
    EXPORT.to_csv(path, index=False)
    with pytest.raises(DataError, match="'Nope'.*columns found: CustomerID"):
        load_events(path, ColumnMapping.parse(["customer_id=Nope"]))
    with pytest.raises(DataError, match="canonical columns"):
        ColumnMapping.parse(["client=CustomerID"])


def test_unknown_file_type_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="existing file"):
        load_events(tmp_path / "missing.csv")
    (tmp_path / "e.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"\.csv"):
        load_events(tmp_path / "e.xlsx")


def test_failed_write_keeps_the_good_file(tmp_path, monkeypatch):
    out = tmp_path / "events.parquet"
    good = pd.DataFrame({"a": [1]})
    write_events(good, out)

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        write_events(pd.DataFrame({"a": [2]}), out)
    monkeypatch.undo()
    assert pd.read_parquet(out)["a"].tolist() == [1]
