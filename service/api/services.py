"""What the API's routes share: the database, the model, the assistant, rescoring and webhooks.

Built once per app (in its lifespan) and handed to routes by dependency injection, so tests build
their own with their own settings and nothing is global.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.explain import Assistant
from assistant.scoring import Scorer
from service import db, wiring
from service.jobs import ReportJobs
from service.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Any = None
    Session: Any = None
    _assistant: Assistant | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # One scoring at a time: 2 cores gain nothing from parallel forward passes, and the model's
    # memo cache is not thread-safe.
    model_lock: threading.RLock = field(default_factory=threading.RLock)

    jobs: ReportJobs = field(init=False)

    def __post_init__(self) -> None:
        self.engine = db.engine_for(self.settings.db_url)
        self.Session = db.sessions(self.engine)
        self.jobs = ReportJobs(self)

    # Loading a model takes seconds: do it once, on first use, under a lock.
    @property
    def assistant(self) -> Assistant:
        with self._lock:
            if self._assistant is None:
                self._assistant = wiring.assistant(self.settings, self.settings.model_dir)
            return self._assistant

    @property
    def scorer(self) -> Scorer:
        return self.assistant.scorer

    @property
    def model_version(self) -> str:
        return self.scorer.model.directory.name

    def events(self, session: Session, customers: list[str] | None = None) -> pd.DataFrame:
        return db.load_events(session, customers)

    def rescore(self, session: Session, customers: list[str]) -> list[dict]:
        """Score customers from stored events, store the scores, warn on upward crossings."""
        events = self.events(session, customers)
        if events.empty:
            return []
        scores = self.scorer.score(events, customers=[c for c in customers
                                                      if c in set(events["customer_id"])])
        out = []
        for row in scores.itertuples():
            old = session.get(db.ScoreRow, row.customer_id)
            previous = old.probability if old else None
            record = {"customer_id": row.customer_id, "probability": float(row.probability),
                      "band": row.band, "previous": previous,
                      "cutoff": row.cutoff.date().isoformat()}
            session.merge(db.ScoreRow(**record, model_version=self.model_version,
                                      scored_at=db.now()))
            threshold = self.settings.risk_threshold
            if row.probability >= threshold and (previous is None or previous < threshold):
                record["warning"] = self.warn(session, record)
            out.append(record)
        session.commit()
        return out

    def warn(self, session: Session, record: dict) -> str:
        """POST a signed warning to the configured webhook; every attempt is recorded."""
        payload = json.dumps({"type": "risk.threshold_crossed", **record,
                              "threshold": self.settings.risk_threshold}, sort_keys=True)
        status, detail = "skipped", "no webhook URL configured"
        if self.settings.webhook_url:
            signature = hmac.new(self.settings.webhook_secret.encode(), payload.encode(),
                                 hashlib.sha256).hexdigest()
            try:
                res = httpx.post(self.settings.webhook_url, content=payload, timeout=5.0,
                                 headers={"Content-Type": "application/json",
                                          "X-Retention-Signature": f"sha256={signature}"})
                status = "sent" if res.is_success else "failed"
                detail = f"HTTP {res.status_code}"
            except httpx.HTTPError as exc:
                status, detail = "failed", str(exc)[:300]
        session.add(db.WebhookRow(customer_id=record["customer_id"], payload=payload,
                                  status=status, detail=detail, created_at=db.now()))
        return status

    def latest_score(self, session: Session, customer_id: str) -> db.ScoreRow | None:
        return session.scalars(select(db.ScoreRow).where(
            db.ScoreRow.customer_id == customer_id)).first()
