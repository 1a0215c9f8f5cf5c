"""RFM-style aggregates for a snapshot, from events strictly before its cutoff.

The first thing ``compute_features`` does is drop every event at or after the cutoff; everything
after works on that history alone, which is what makes the no-leakage property test hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.labels import DAY, ChurnDefinition, as_cutoff

WINDOWS = (30, 90, 180)
FEATURE_COLUMNS: tuple[str, ...] = (
    "recency_days", "tenure_days", "frequency", "monetary", "avg_amount",
    *(f"n_{w}d" for w in WINDOWS), *(f"amount_{w}d" for w in WINDOWS), "amount_prev_90d",
    "spend_trend", "gap_mean", "gap_std", "recency_over_gap", "days_since_any_event",
    "n_returns", "return_amount", "returns_90d", "return_rate",
    "n_reviews", "rating_mean", "rating_min", "rating_last", "n_low_ratings",
    "n_tickets", "tickets_90d", "n_visits", "visits_30d", "n_cancels",
)


def _days(delta: pd.Series | pd.Index) -> np.ndarray:
    return np.asarray(delta / DAY, dtype="float64")


def _count(frame: pd.DataFrame, ids: pd.Index) -> pd.Series:
    return frame.groupby("customer_id", observed=True).size().reindex(ids, fill_value=0)


def _sum(frame: pd.DataFrame, column: str, ids: pd.Index) -> pd.Series:
    return frame.groupby("customer_id", observed=True)[column].sum().reindex(ids, fill_value=0.0)


def compute_features(events: pd.DataFrame, cutoff: pd.Timestamp | str,
                     customers: pd.Index | list[str], definition: ChurnDefinition
                     ) -> pd.DataFrame:
    """One row per customer in ``customers`` (in that order), columns ``FEATURE_COLUMNS``."""
    cutoff = as_cutoff(cutoff)
    ids = pd.Index(customers, dtype="string", name="customer_id")
    hist = events[(events["ts"] < cutoff) & events["customer_id"].isin(ids)]
    age = _days(cutoff - hist["ts"])
    hist = hist.assign(age=age, amount=hist["amount"].fillna(0.0))
    kind = hist["event"].astype("string")
    act = hist[kind.isin(definition.activity_events).to_numpy()]
    out = pd.DataFrame(index=ids)

    by_act = act.groupby("customer_id", observed=True)
    out["recency_days"] = by_act["age"].min().reindex(ids)
    out["tenure_days"] = hist.groupby("customer_id", observed=True)["age"].max().reindex(ids)
    out["days_since_any_event"] = hist.groupby("customer_id", observed=True)["age"].min().reindex(ids)
    out["frequency"] = _count(act, ids).astype("float64")
    out["monetary"] = _sum(act, "amount", ids)
    out["avg_amount"] = out["monetary"] / out["frequency"].replace(0, np.nan)
    for w in WINDOWS:
        recent = act[act["age"] <= w]
        out[f"n_{w}d"] = _count(recent, ids).astype("float64")
        out[f"amount_{w}d"] = _sum(recent, "amount", ids)
    prev = act[(act["age"] > 90) & (act["age"] <= 180)]
    out["amount_prev_90d"] = _sum(prev, "amount", ids)
    out["spend_trend"] = (out["amount_90d"] - out["amount_prev_90d"]) / (
        out["amount_90d"] + out["amount_prev_90d"]).replace(0, np.nan)

    ordered = act.sort_values(["customer_id", "ts"], kind="stable")
    gaps = ordered.groupby("customer_id", observed=True)["ts"].diff() / DAY
    gap_stats = gaps.groupby(ordered["customer_id"], observed=True).agg(["mean", "std"])
    out["gap_mean"] = gap_stats["mean"].reindex(ids)
    out["gap_std"] = gap_stats["std"].reindex(ids)
    out["recency_over_gap"] = out["recency_days"] / out["gap_mean"].clip(lower=1.0)

    returns = hist[(kind == "return").to_numpy()]
    out["n_returns"] = _count(returns, ids).astype("float64")
    out["return_amount"] = _sum(returns, "amount", ids)
    out["returns_90d"] = _count(returns[returns["age"] <= 90], ids).astype("float64")
    out["return_rate"] = out["n_returns"] / out["frequency"].clip(lower=1.0)

    rated = hist[hist["rating"].notna().to_numpy()].sort_values(["customer_id", "ts"],
                                                               kind="stable")
    by_rated = rated.groupby("customer_id", observed=True)["rating"]
    out["n_reviews"] = _count(hist[(kind == "review").to_numpy()], ids).astype("float64")
    out["rating_mean"] = by_rated.mean().reindex(ids)
    out["rating_min"] = by_rated.min().reindex(ids)
    out["rating_last"] = by_rated.last().reindex(ids)
    out["n_low_ratings"] = _count(rated[rated["rating"] <= 2], ids).astype("float64")

    tickets = hist[(kind == "ticket").to_numpy()]
    out["n_tickets"] = _count(tickets, ids).astype("float64")
    out["tickets_90d"] = _count(tickets[tickets["age"] <= 90], ids).astype("float64")
    visits = hist[(kind == "visit").to_numpy()]
    out["n_visits"] = _count(visits, ids).astype("float64")
    out["visits_30d"] = _count(visits[visits["age"] <= 30], ids).astype("float64")
    out["n_cancels"] = _count(hist[(kind == "cancel").to_numpy()], ids).astype("float64")
    return out[list(FEATURE_COLUMNS)].astype("float64")
