"""Importers for the public datasets: a small copy of their formats here, the real files in CI."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from finetune.contract import DataError
from finetune.evaluate import EvaluateConfig, evaluate
from finetune.importers import import_amazon_reviews, import_online_retail, load_chinese_reviews
from tests.conftest import shared_file

RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,17850.0,United Kingdom
"""


def test_online_retail_invoices_and_cancellations(tmp_path):
    src = tmp_path / "retail.csv.gz"
    with gzip.open(src, "wt") as fh:
        fh.write(RETAIL)
    events, report = import_online_retail(src)
    assert events["event"].astype(str).tolist() == ["order", "return"]
    order = events.iloc[0]
    assert order["customer_id"] == "17850" and order["order_id"] == "536365"
    assert order["amount"] == pytest.approx(6 * 2.55 + 6 * 3.39)
    assert "white hanging heart" in order["item"]
    assert events.iloc[1]["amount"] == 27.5
    assert report.dropped["line without CustomerID"] == 1


def test_online_retail_bad_quantity_names_the_line(tmp_path):
    src = tmp_path / "retail.csv"
    src.write_text(RETAIL.replace(",6,2010-12-01 08:28", ",six,2010-12-01 08:28"))
    with pytest.raises(DataError, match=r"'Quantity'.*line\(s\): 4"):
        import_online_retail(src)


def test_amazon_reviews_become_review_events(tmp_path):
    src = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": ["u1"], "item_id": ["i9"], "rating": [2.0], "text": ["Buzzes."],
                  "summary": ["Meh"], "ts": [pd.Timestamp("2014-01-02", tz="UTC")]}).to_parquet(src)
    events, _ = import_amazon_reviews(src)
    row = events.iloc[0]
    assert row["event"] == "review" and row["rating"] == 2.0 and row["text"] == "Meh. Buzzes."


@pytest.mark.data
@pytest.mark.slow
def test_real_online_retail_matches_the_reference_protocol():
    events, _ = import_online_retail(shared_file("online_retail/online_retail.csv.gz"))
    result = evaluate(events, EvaluateConfig(models=("lightgbm", "recency")))
    assert result["test_cutoff"] == "2011-09-11"
    assert result["n_test"] == 3370
    assert result["test_churn_rate"] == pytest.approx(0.43, abs=0.01)
    assert result["models"]["lightgbm"]["auc"] == pytest.approx(0.73, abs=0.02)
    assert result["models"]["recency"]["auc"] == pytest.approx(0.68, abs=0.02)


@pytest.mark.data
def test_real_amazon_and_chinese_data_load():
    events, report = import_amazon_reviews(shared_file("amazon_musical_instruments/reviews.parquet"))
    assert report.n_output == 10261 and events["customer_id"].nunique() == 1429
    zh = load_chinese_reviews(shared_file("chinese_reviews/online_shopping_10_cats.zip"))
    assert len(zh) == 62773 and not zh["review"].str.startswith("\ufeff").any()
