"""Storing scores: the history, the latest score per customer, and warnings on upward crossings.

One function for every path that scores (ingestion, the daily rescoring, a replay), so the rule
"warn when the risk crossed the threshold upwards since the customer's previous score" has one
home. The previous score is the latest one at an earlier as-of date: scoring the same date again
(a rerun, or ingestion on a day already rescored) replaces that date's row and can raise at most
the one warning whose id is fixed by customer and date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import db, outbox

IN_BATCH = 500  # ids per IN (...) query: far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class WarnRule:
    threshold: float
    deliver: bool  # a webhook URL is configured


def previous_scores(session: Session, ids: list[str], as_of: str) -> dict[str, float]:
    """Each customer's latest probability at an as-of date before ``as_of``."""
    out: dict[str, tuple[str, float]] = {}
    for start in range(0, len(ids), IN_BATCH):
        rows = session.execute(select(db.ScoreHistoryRow.customer_id, db.ScoreHistoryRow.as_of,
                                      db.ScoreHistoryRow.probability).where(
            db.ScoreHistoryRow.customer_id.in_(ids[start:start + IN_BATCH]),
            db.ScoreHistoryRow.as_of < as_of))
        for cid, when, p in rows:
            if cid not in out or when > out[cid][0]:
                out[cid] = (when, p)
    return {cid: p for cid, (_, p) in out.items()}


def _scored_since(session: Session, ids: list[str], day: str, since: datetime) -> set[str]:
    out: set[str] = set()
    for start in range(0, len(ids), IN_BATCH):
        out |= set(session.scalars(select(db.ScoreHistoryRow.customer_id).where(
            db.ScoreHistoryRow.customer_id.in_(ids[start:start + IN_BATCH]),
            db.ScoreHistoryRow.as_of == day, db.ScoreHistoryRow.scored_at > since)))
    return out


def record_scores(session: Session, scores: pd.DataFrame, as_of: pd.Timestamp,
                  model_version: str, rule: WarnRule, now: datetime | None = None,
                  unless_scored_since: datetime | None = None) -> list[dict[str, Any]]:
    """Store ``scores`` (customer_id, probability, band) at ``as_of`` and add the warnings, in
    the caller's transaction (commit after: the score and its warning land together).

    ``unless_scored_since``: a bulk run read its events at that instant, so a customer that
    ingestion rescored after it has a fresher score at the same date, which is kept."""
    now = now or db.now()
    day = as_of.date().isoformat()
    if unless_scored_since is not None and len(scores):
        fresher = _scored_since(session, [str(c) for c in scores["customer_id"]], day,
                                unless_scored_since)
        scores = scores[~scores["customer_id"].astype(str).isin(fresher)]
    ids = [str(c) for c in scores["customer_id"]]
    previous = previous_scores(session, ids, day)
    history, latest, out = [], [], []
    for cid, p, band in zip(ids, scores["probability"].astype(float), scores["band"]):
        prev = previous.get(cid)
        record: dict[str, Any] = {"customer_id": cid, "as_of": day, "probability": float(p),
                                  "band": str(band), "previous": prev,
                                  "model_version": model_version}
        history.append({"customer_id": cid, "as_of": day, "probability": float(p),
                        "band": str(band), "model_version": model_version, "scored_at": now})
        latest.append({"customer_id": cid, "probability": float(p), "band": str(band),
                       "previous": prev, "cutoff": day, "model_version": model_version,
                       "scored_at": now})
        if p >= rule.threshold and (prev is None or prev < rule.threshold):
            wid = outbox.enqueue(session, record, rule.threshold, rule.deliver, now)
            record["warning"] = wid or outbox.warning_id(cid, day)
            record["new_warning"] = wid is not None
        out.append(record)
    db.upsert(session, db.ScoreHistoryRow, history, ["customer_id", "as_of"])
    # The latest score never goes back in time (a backfill of an older date keeps it).
    newer: set[str] = set()
    for start in range(0, len(ids), IN_BATCH):
        newer |= set(session.scalars(select(db.ScoreRow.customer_id).where(
            db.ScoreRow.customer_id.in_(ids[start:start + IN_BATCH]), db.ScoreRow.cutoff > day)))
    db.upsert(session, db.ScoreRow, [r for r in latest if r["customer_id"] not in newer],
            ["customer_id"])
    return out


def trend(session: Session, customer_id: str, limit: int = 30) -> list[dict[str, Any]]:
    """The customer's scores, oldest first (the page's trend line)."""
    rows = session.scalars(select(db.ScoreHistoryRow).where(
        db.ScoreHistoryRow.customer_id == customer_id).order_by(
        db.ScoreHistoryRow.as_of.desc()).limit(limit)).all()
    return [{"as_of": r.as_of, "probability": r.probability, "band": r.band,
             "model_version": r.model_version} for r in reversed(rows)]
