"""Risk warnings for CRMs: written to an outbox with the score, delivered later with retries.

Why an outbox: posting a webhook inside the scoring transaction made a slow receiver hold the
database (a concurrent ingestion failed with "database is locked") and a receiver that was down
lost the warning. Here a warning row is added in the same transaction as the score that raised
it, and a sender thread delivers it afterwards, outside any transaction or lock, retrying with
exponential backoff; attempts and the last error are kept, and a restart resumes delivery.

Each warning has a stable id (customer and as-of date) sent with every attempt
(``X-Retention-Warning-Id``), so a receiver can deduplicate. Bodies are signed the way CRMs
already verify Stripe-style webhooks::

    X-Retention-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service import db

log = logging.getLogger("retention.outbox")
SIGNATURE_HEADER = "X-Retention-Signature"
ID_HEADER = "X-Retention-Warning-Id"


def warning_id(customer_id: str, as_of: str) -> str:
    """Stable across retries, restarts and reruns of the same as-of date."""
    return "w_" + hashlib.sha256(f"{customer_id}\x1f{as_of}".encode()).hexdigest()[:32]


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: the signature matches and its timestamp is recent (no replays)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def enqueue(session: Session, record: dict[str, Any], threshold: float, deliver: bool,
            now: datetime) -> str | None:
    """Add the warning for this crossing unless it exists (same customer and as-of date):
    returns its id when it is new. Part of the caller's transaction."""
    wid = warning_id(record["customer_id"], record["as_of"])
    if session.get(db.WarningRow, wid) is not None:
        return None
    payload = json.dumps({"id": wid, "type": "risk.threshold_crossed", "threshold": threshold,
                          **record}, sort_keys=True)
    session.add(db.WarningRow(id=wid, customer_id=record["customer_id"], as_of=record["as_of"],
                              payload=payload, status="pending" if deliver else "skipped",
                              attempts=0, next_attempt_at=now,
                              last_error="" if deliver else "no webhook URL configured",
                              created_at=now))
    return wid


@dataclass
class SenderConfig:
    url: str
    secret: str
    timeout_s: float = 5.0
    max_attempts: int = 12
    backoff_s: float = 2.0  # first retry after this, doubling up to backoff_max_s
    backoff_max_s: float = 3600.0
    poll_s: float = 1.0
    lease_s: float = 60.0  # a claimed row is not taken by another sender for this long


def backoff(config: SenderConfig, attempts: int) -> float:
    return min(config.backoff_max_s, config.backoff_s * 2 ** max(0, attempts - 1))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Sender:
    """Delivers due warnings in a daemon thread; ``deliver_due`` is one pass (tests call it)."""

    Session: sessionmaker[Session]
    config: SenderConfig
    client: httpx.Client = field(default=None)  # type: ignore[assignment]
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = httpx.Client(timeout=self.config.timeout_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="warning-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("warning delivery pass failed")
            self._wake.wait(self.config.poll_s)
            self._wake.clear()

    def _claim(self, limit: int = 50) -> list[db.WarningRow]:
        """Due rows, each claimed by moving its next attempt out by the lease (a second
        process running a sender skips them)."""
        now = datetime.now(UTC)
        claimed = []
        with self.Session() as session:
            due = session.scalars(select(db.WarningRow).where(
                db.WarningRow.status == "pending", db.WarningRow.next_attempt_at <= now)
                .order_by(db.WarningRow.next_attempt_at).limit(limit)).all()
            for row in due:
                res = session.execute(update(db.WarningRow).where(
                    db.WarningRow.id == row.id,
                    db.WarningRow.next_attempt_at == row.next_attempt_at,
                    db.WarningRow.status == "pending").values(
                    next_attempt_at=now + timedelta(seconds=self.config.lease_s)))
                if res.rowcount == 1:
                    claimed.append(row)
            session.commit()
        return claimed

    def deliver_due(self) -> int:
        """Try every due warning once; returns how many were tried."""
        rows = self._claim()
        for row in rows:
            body = row.payload.encode()
            error = ""
            try:
                res = self.client.post(self.config.url, content=body, headers={
                    "Content-Type": "application/json", ID_HEADER: row.id,
                    "X-Retention-Attempt": str(row.attempts + 1),
                    SIGNATURE_HEADER: sign(self.config.secret, body, int(time.time()))})
                if not res.is_success:
                    error = f"HTTP {res.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            self._record(row.id, error)
        return len(rows)

    def _record(self, wid: str, error: str) -> None:
        now = datetime.now(UTC)
        with self.Session() as session:
            row = session.get(db.WarningRow, wid)
            if row is None:  # erased meanwhile
                return
            row.attempts += 1
            if not error:
                row.status, row.delivered_at, row.last_error = "delivered", now, ""
            else:
                row.last_error = error
                if row.attempts >= self.config.max_attempts:
                    row.status = "dead"
                else:
                    row.next_attempt_at = now + timedelta(
                        seconds=backoff(self.config, row.attempts))
            session.commit()


def redeliver(session: Session, wid: str) -> db.WarningRow | None:
    """Queue a warning again now (a dead one after the receiver was fixed, or a delivered one
    a CRM lost); its id stays the same."""
    row = session.get(db.WarningRow, wid)
    if row is None:
        return None
    row.status, row.next_attempt_at = "pending", datetime.now(UTC)
    session.commit()
    return row


def as_dict(row: db.WarningRow) -> dict[str, Any]:
    return {"id": row.id, "customer_id": row.customer_id, "as_of": row.as_of,
            "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
            "created_at": _utc(row.created_at).isoformat(),
            "next_attempt_at": _utc(row.next_attempt_at).isoformat(),
            "delivered_at": _utc(row.delivered_at).isoformat() if row.delivered_at else None}
