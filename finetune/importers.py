"""Turn the public datasets in ``../shared/data`` into the canonical events table.

They are the real data every figure in this project is measured on, so their quirks (float-text
customer ids, cancellation invoices, the 5-core filter) are handled here once, visibly.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from finetune.contract import DataError, ValidationReport, validate_events

ONLINE_RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                         "UnitPrice", "CustomerID", "Country")
MAX_ITEMS_PER_ORDER = 5


def _require(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(source, missing[0], [], "the columns " + ", ".join(columns))


def _item_summary(lines: pd.DataFrame) -> pd.Series:
    """Per invoice: the biggest lines by value, then '+N more', so the text stays short."""
    lines = lines.assign(_abs=lines["line_amount"].abs())
    lines = lines.sort_values(["InvoiceNo", "_abs"], ascending=[True, False], kind="stable")
    desc = lines["Description"].fillna("").str.strip().str.lower()
    lines = lines.assign(_desc=desc.where(desc != "", lines["StockCode"].astype(str)))

    def summarize(group: pd.Series) -> str:
        items = list(dict.fromkeys(group.tolist()))
        head = "; ".join(items[:MAX_ITEMS_PER_ORDER])
        extra = len(items) - MAX_ITEMS_PER_ORDER
        return head + (f" (+{extra} more)" if extra > 0 else "")

    return lines.groupby("InvoiceNo", sort=True)["_desc"].agg(summarize)


def import_online_retail(src: str | Path) -> tuple[pd.DataFrame, ValidationReport]:
    """Invoices become ``order`` events, cancellation invoices ('C...') ``return`` events.

    One event per invoice (amount = sum of quantity x price, quantity = units, item = the largest
    lines' descriptions). Lines without a customer id are dropped and counted.
    """
    src = Path(src)
    raw = pd.read_csv(src, dtype=str, keep_default_na=False, na_values=[""],
                      encoding="utf-8-sig", encoding_errors="replace")
    _require(raw, ONLINE_RETAIL_COLUMNS, str(src))
    n_lines = len(raw)
    qty = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    for name, values in (("Quantity", qty), ("UnitPrice", price)):
        bad = values.isna().to_numpy()
        if bad.any():
            rows = [int(i) + 2 for i in np.flatnonzero(bad)[:5]]
            raise DataError(str(src), name, rows, "a number", n_bad=int(bad.sum()),
                            row_label="line")
    raw = raw.assign(Quantity=qty, UnitPrice=price, line_amount=qty * price)
    no_customer = raw["CustomerID"].isna()
    lines = raw[~no_customer]
    is_cancel = lines["InvoiceNo"].str.upper().str.startswith("C")
    items = _item_summary(lines)
    grouped = lines.groupby("InvoiceNo", sort=True).agg(
        customer_id=("CustomerID", "first"), ts=("InvoiceDate", "min"),
        amount=("line_amount", "sum"), quantity=("Quantity", "sum"))
    grouped["item"] = items
    cancel_ids = set(lines.loc[is_cancel, "InvoiceNo"])
    grouped["event"] = np.where(grouped.index.isin(list(cancel_ids)), "return", "order")
    # Returns carry positive amounts and quantities: the sign is in the event type.
    grouped["amount"] = grouped["amount"].abs().round(2)
    grouped["quantity"] = grouped["quantity"].abs()
    grouped = grouped.reset_index().rename(columns={"InvoiceNo": "order_id"})
    events, report = validate_events(grouped, str(src))
    report.n_input = n_lines
    report.drop("line without CustomerID", int(no_customer.sum()))
    report.drop("lines merged into one event per invoice",
                int((~no_customer).sum()) - len(grouped))
    return events, report


def import_amazon_reviews(src: str | Path) -> tuple[pd.DataFrame, ValidationReport]:
    """Each review becomes a ``review`` event (rating, summary and text); item = the product id.

    Reviews stand in for purchases here: evaluate with ``--activity review`` and, because of the
    5-core filter, ``--min-prior 5``.
    """
    src = Path(src)
    raw = pd.read_parquet(src)
    _require(raw, ("user_id", "item_id", "rating", "text", "ts"), str(src))
    summary = raw["summary"].fillna("").astype(str) if "summary" in raw else ""
    body = raw["text"].fillna("").astype(str)
    text = np.where(summary.str.len() > 0, summary + ". " + body, body)
    frame = pd.DataFrame({
        "customer_id": raw["user_id"], "ts": raw["ts"], "event": "review",
        "item": raw["item_id"].astype(str), "rating": raw["rating"], "text": text,
        "order_id": raw["user_id"].astype(str) + ":" + raw["item_id"].astype(str),
    })
    return validate_events(frame, str(src))


def load_chinese_reviews(src: str | Path) -> pd.DataFrame:
    """The labelled Chinese reviews (cat, label, review): for tokenizer and sentiment checks only."""
    src = Path(src)
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".csv"))
            with zf.open(name) as fh:
                df = pd.read_csv(fh, encoding="utf-8-sig", dtype={"review": str})
    else:
        df = pd.read_csv(src, encoding="utf-8-sig", dtype={"review": str})
    _require(df, ("cat", "label", "review"), str(src))
    df["review"] = df["review"].fillna("").str.replace("\ufeff", "", regex=False).str.strip()
    return df[df["review"] != ""].reset_index(drop=True)
