"""Point-in-time churn labels and the backtest protocol every figure in this project uses.

A cutoff is a UTC midnight. History is every event strictly before it; the label looks only at
``[cutoff, cutoff + horizon)``. Training cutoffs end a full horizon before the test cutoff, so no
training label window overlaps the test window: the test score is what a user would really get.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class ChurnDefinition:
    """What churn means and who is at risk of it.

    ``activity_events`` are the events that count as the customer still buying (``order``; for
    review-only data such as Amazon, ``review``). ``min_prior`` is the number of activity events
    a customer needs before the cutoff over their whole history (5 for the Amazon 5-core data).
    """

    kind: Literal["inactivity", "explicit"] = "inactivity"
    horizon: int = 90
    lookback: int = 365
    activity_events: tuple[str, ...] = ("order",)
    min_prior: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("inactivity", "explicit"):
            raise ValueError(f"churn kind must be 'inactivity' or 'explicit', not {self.kind!r}")
        if self.horizon < 1 or self.lookback < 1 or self.min_prior < 1:
            raise ValueError("horizon, lookback and min_prior must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


def as_cutoff(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.normalize()


def labels_end_by(cutoffs: pd.Series | list, horizon: float, moment: pd.Timestamp) -> np.ndarray:
    """Which cutoffs' label windows end by ``moment``: the purge that keeps a model from being
    chosen on a validation window whose future its training rows share."""
    return np.asarray(pd.Series(cutoffs) + pd.Timedelta(days=horizon) <= moment)


def data_bounds(events: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First day and the exclusive end (midnight after the last event) of the data."""
    if events.empty:
        raise ValueError("no events: cannot place cutoffs")
    return events["ts"].min().normalize(), events["ts"].max().normalize() + DAY


def eligible_customers(events: pd.DataFrame, cutoff: pd.Timestamp,
                       definition: ChurnDefinition) -> pd.Index:
    """Customers with an activity event in the lookback window and ``min_prior`` before cutoff.

    Under the explicit definition, a customer who already cancelled after their last activity has
    left and is not at risk any more.
    """
    cutoff = as_cutoff(cutoff)
    hist = events[events["ts"] < cutoff]
    act = hist[hist["event"].isin(definition.activity_events)]
    recent = act[act["ts"] >= cutoff - definition.lookback * DAY]["customer_id"].unique()
    counts = act.groupby("customer_id", observed=True).size()
    ok = counts[counts >= definition.min_prior].index
    ids = pd.Index(recent).intersection(ok)
    if definition.kind == "explicit":
        last_act = act.groupby("customer_id", observed=True)["ts"].max()
        is_cancel = hist["event"] == "cancel"
        last_cancel = hist[is_cancel].groupby("customer_id", observed=True)["ts"].max()
        both = last_cancel.index.intersection(last_act.index)
        gone = both[(last_cancel[both] > last_act[both]).to_numpy()]
        ids = ids.difference(gone)
    return ids.sort_values()


def churn_labels(events: pd.DataFrame, cutoff: pd.Timestamp, customers: pd.Index,
                 definition: ChurnDefinition) -> pd.Series:
    """1 = churned in ``[cutoff, cutoff + horizon)``; raises if the data end before that window."""
    cutoff = as_cutoff(cutoff)
    end = cutoff + definition.horizon * DAY
    _, data_end = data_bounds(events)
    if end > data_end:
        raise ValueError(f"cutoff {cutoff.date()} + {definition.horizon} days runs past the end "
                         f"of the data ({(data_end - DAY).date()}): the label would be a guess")
    window = events[(events["ts"] >= cutoff) & (events["ts"] < end)]
    if definition.kind == "inactivity":
        active = set(window.loc[window["event"].isin(definition.activity_events), "customer_id"])
        churned = ~customers.isin(list(active))
    else:
        cancelled = set(window.loc[window["event"] == "cancel", "customer_id"])
        churned = customers.isin(list(cancelled))
    return pd.Series(churned, index=customers, name="label", dtype="int8")


@dataclass
class BacktestPlan:
    """Cutoffs for fitting, validation (latest training cutoffs) and test (last full horizon)."""

    test_cutoff: pd.Timestamp
    fit_cutoffs: list[pd.Timestamp]
    val_cutoffs: list[pd.Timestamp]
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    window: dict | None = None  # the training-window choice (``finetune.window``), when made

    @property
    def train_cutoffs(self) -> list[pd.Timestamp]:
        return self.fit_cutoffs + self.val_cutoffs

    def to_dict(self) -> dict:
        fmt = lambda ts: str(ts.date())
        return {"test_cutoff": fmt(self.test_cutoff),
                "fit_cutoffs": [fmt(c) for c in self.fit_cutoffs],
                "val_cutoffs": [fmt(c) for c in self.val_cutoffs],
                "data_start": fmt(self.data_start), "data_end": fmt(self.data_end - DAY),
                **({"window": self.window} if self.window is not None else {})}


def plan_backtest(events: pd.DataFrame, definition: ChurnDefinition, step: int = 30,
                  n_val: int = 1, min_history: int | None = None,
                  max_train_cutoffs: int | None = None, production: bool = False
                  ) -> BacktestPlan:
    """Test cutoff = data end - horizon; training cutoffs every ``step`` days from test - horizon.

    ``min_history`` (default ``step``) keeps cutoffs that see too little history out;
    ``max_train_cutoffs`` keeps only the most recent ones, to bound training cost.

    ``production``: the plan of the model that is published, shifted one horizon later. Its
    newest (validation) cutoff is data end - horizon, the latest whose label window the data
    covers, so the served model learns from the most recent labelled behaviour; its
    ``test_cutoff`` is data end, where it will score, and has no labels.
    """
    if step < 1 or n_val < 1:
        raise ValueError("step and n_val must be at least 1")
    start, end = data_bounds(events)
    horizon = definition.horizon * DAY
    test = end if production else end - horizon
    earliest = start + (step if min_history is None else min_history) * DAY
    cutoffs: list[pd.Timestamp] = []
    cutoff = test - horizon
    while cutoff >= earliest and (max_train_cutoffs is None or len(cutoffs) < max_train_cutoffs):
        cutoffs.append(cutoff)
        cutoff -= step * DAY
    if len(cutoffs) < n_val + 1:
        span = (end - start).days
        raise ValueError(f"the data span {span} days: a {definition.horizon}-day horizon leaves "
                         f"{len(cutoffs)} training cutoff(s), need at least {n_val + 1}; use a "
                         "shorter horizon or step, or more history")
    cutoffs.sort()
    notes = []
    if step < definition.horizon:
        notes.append("training label windows overlap each other and the validation window "
                     "(never the test window): validation figures are slightly optimistic")
    return BacktestPlan(test_cutoff=test, fit_cutoffs=cutoffs[:-n_val],
                        val_cutoffs=cutoffs[-n_val:], data_start=start, data_end=end, notes=notes)
