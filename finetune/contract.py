"""The canonical events table and its validation.

Every source (CSV, Parquet, SQL, importers, the synthetic generator) ends up as this one table, so
labels, features and serialization only ever see clean, typed, UTC data. Validation lives here, at
the edge, and says exactly which rows and fields are wrong so a user can fix their export.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finetune.pii import mask_series

EVENT_TYPES: tuple[str, ...] = ("order", "return", "review", "ticket", "visit", "cancel", "note",
                                 "other")
REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "ts", "event")
OPTIONAL_COLUMNS: dict[str, str] = {
    "amount": "number",
    "quantity": "number",
    "order_id": "string",
    "item": "string",
    "rating": "number 1-5",
    "text": "string",
    "event_id": "string, unique (derived from the row's content when absent)",
}
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + tuple(OPTIONAL_COLUMNS)
CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_id", "signup_ts", "country", "segment")
MAX_LISTED_ROWS = 5


class DataError(ValueError):
    """Bad input, with where it is and what was expected, so a user can fix the source."""

    def __init__(self, source: str, field: str, rows: list[int], expected: str, found: str = "",
                 n_bad: int | None = None, row_label: str = "row") -> None:
        self.source, self.field, self.rows, self.expected = source, field, rows, expected
        shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
        count = n_bad if n_bad is not None else len(rows)
        more = f" and {count - MAX_LISTED_ROWS} more" if count > MAX_LISTED_ROWS else ""
        where = f" in {count} {row_label}(s): {shown}{more}" if rows else ""
        got = f"; found {found}" if found else ""
        super().__init__(f"{source}: field '{field}' is invalid{where}; expected {expected}{got}")


@dataclass
class ValidationReport:
    """What validation did to a table: what it kept and what it dropped on purpose, and why."""

    source: str
    n_input: int = 0
    n_output: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def summary(self) -> str:
        parts = [f"{self.source}: {self.n_output:,} of {self.n_input:,} rows kept"]
        parts += [f"{n:,} dropped ({why})" for why, n in self.dropped.items()]
        return "; ".join(parts)


def _row_numbers(mask: np.ndarray, row_offset: int) -> list[int]:
    return [int(i) + row_offset for i in np.flatnonzero(mask)[:MAX_LISTED_ROWS]]


def _examples(values: pd.Series, mask: np.ndarray) -> str:
    shown = values[mask].head(3).tolist()
    return ", ".join(repr(v) for v in shown)


def _parse_ts(raw: pd.Series) -> pd.Series:
    """Parse to UTC; naive timestamps are taken as UTC, numbers as Unix seconds."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = raw
    elif pd.api.types.is_numeric_dtype(raw):
        ts = pd.to_datetime(raw, unit="s", errors="coerce")
    else:
        ts = pd.to_datetime(raw.astype("string").str.strip(), errors="coerce", format="mixed",
                            utc=True)
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _clean_id(raw: pd.Series) -> pd.Series:
    """Ids are strings; float text like '17850.0' (a common export artefact) becomes '17850'."""
    s = raw.astype("string").str.strip()
    s = s.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return s.mask(s.isin(["", "nan", "NaN", "None", "<NA>"]))


def _event_ids(out: pd.DataFrame, source: str, row_label: str) -> pd.Series:
    """Given ids must be unique; missing ones come from the row's content, so they are the same
    every time the same export is loaded (retrieval upserts by them) and never collide."""
    given = out["event_id"]
    if out.empty:
        return given.astype("string")
    content = out.drop(columns=["event_id"]).astype("string").fillna("")
    derived = "e" + pd.Series(pd.util.hash_pandas_object(content, index=False).to_numpy(),
                              index=out.index).map("{:016x}".format)
    ids = given.fillna(derived).astype("string")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(source, "event_id", [], "one row per event_id",
                        _examples(ids, dup), n_bad=int(dup.sum()), row_label=row_label)
    return ids


NAME_COLUMN = "customer_name"
"""Optional: the customer's name, used only to mask it in their text; never stored."""


def validate_events(df: pd.DataFrame, source: str = "events", *, drop_invalid: bool = False,
                    row_offset: int = 1, row_label: str = "row"
                    ) -> tuple[pd.DataFrame, ValidationReport]:
    """Return the canonical, typed, sorted events table, or raise DataError naming the bad rows.

    Rows without a customer id and exact duplicates are dropped and counted (exports routinely
    contain guest checkouts and double-written lines). Unparseable values raise, unless
    ``drop_invalid`` is set, in which case they are dropped and counted too.
    ``row_offset`` maps positions to the user's row numbers (2 for a CSV with a header gives lines).
    """
    report = ValidationReport(source=source, n_input=len(df))
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(source, missing[0], [], f"a column named '{missing[0]}' "
                        f"(columns found: {', '.join(map(str, df.columns))}); "
                        "map your own column names with a column mapping")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    bad_any = np.zeros(len(df), dtype=bool)

    def fail_or_drop(name: str, mask: np.ndarray, expected: str, values: pd.Series) -> None:
        nonlocal bad_any
        if not mask.any():
            return
        if not drop_invalid:
            raise DataError(source, name, _row_numbers(mask, row_offset), expected,
                            _examples(values, mask), n_bad=int(mask.sum()), row_label=row_label)
        report.drop(f"invalid {name}", int((mask & ~bad_any).sum()))
        bad_any |= mask

    out["customer_id"] = _clean_id(df["customer_id"])
    no_id = out["customer_id"].isna().to_numpy()

    raw_ts = df["ts"]
    out["ts"] = _parse_ts(raw_ts)
    bad_ts = out["ts"].isna().to_numpy() & ~no_id
    fail_or_drop("ts", bad_ts, "a date/time such as '2011-09-11 08:26:00' (naive means UTC)", raw_ts)

    event = df["event"].astype("string").str.strip().str.lower()
    bad_event = ~event.isin(EVENT_TYPES).fillna(False).to_numpy() & ~no_id
    fail_or_drop("event", bad_event, "one of " + ", ".join(EVENT_TYPES), df["event"])
    out["event"] = pd.Categorical(event.where(~bad_event), categories=list(EVENT_TYPES))

    for name in ("amount", "quantity", "rating"):
        if name in df.columns:
            raw = df[name]
            num = pd.to_numeric(raw, errors="coerce")
            bad = (num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")).to_numpy()
            expected = "a number"
            if name == "rating":
                bad |= ((num < 1) | (num > 5)).fillna(False).to_numpy()
                expected = "a number from 1 to 5, or empty"
            fail_or_drop(name, bad & ~no_id, expected, raw)
            out[name] = num.astype("float64")
        else:
            out[name] = np.nan
    for name in ("order_id", "item", "text", "event_id"):
        if name in df.columns:
            col = df[name].astype("string")
            out[name] = (_clean_id(col) if name in ("order_id", "event_id")
                         else col.str.replace("\ufeff", ""))
        else:
            out[name] = pd.Series(pd.NA, index=df.index, dtype="string")
    # The data edge: personal data in customer text is masked before anything keeps or shows
    # it; a customer name column is used to mask the name, then dropped (finetune.pii).
    names = df[NAME_COLUMN].astype("string") if NAME_COLUMN in df.columns else None
    out["text"] = mask_series(out["text"], names)

    report.drop("no customer_id", int(no_id.sum()))
    keep = ~no_id & ~bad_any
    out = out[keep]
    n_before = len(out)
    out = out.drop_duplicates()
    report.drop("exact duplicate", n_before - len(out))
    out = out.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    out["event_id"] = _event_ids(out, source, row_label)
    out["event"] = out["event"].astype(pd.CategoricalDtype(list(EVENT_TYPES)))
    report.n_output = len(out)
    return out[list(EVENT_COLUMNS)], report


def validate_customers(df: pd.DataFrame, source: str = "customers") -> pd.DataFrame:
    """Customers are optional context; only the id is required, signup_ts is parsed when present."""
    if "customer_id" not in df.columns:
        raise DataError(source, "customer_id", [], "a column named 'customer_id'")
    out = df.copy()
    out["customer_id"] = _clean_id(out["customer_id"])
    if "signup_ts" in out.columns:
        raw = out["signup_ts"]
        out["signup_ts"] = _parse_ts(raw)
        bad = (out["signup_ts"].isna() & raw.notna()).to_numpy()
        if bad.any():
            raise DataError(source, "signup_ts", _row_numbers(bad, 1), "a date/time",
                            _examples(raw, bad), n_bad=int(bad.sum()))
    dup = out["customer_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(source, "customer_id", _row_numbers(dup, 1), "one row per customer",
                        _examples(out["customer_id"], dup), n_bad=int(dup.sum()))
    return out.dropna(subset=["customer_id"]).reset_index(drop=True)
