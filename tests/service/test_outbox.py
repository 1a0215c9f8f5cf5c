"""Warning delivery: signatures, retries with backoff, resuming after a restart, dead letters,
and a receiver that hangs never holding up scoring (real HTTP receivers on loopback)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from sqlalchemy import select

from service import db, outbox
from service.outbox import Sender, SenderConfig, sign, verify
from service.scores import WarnRule, record_scores


class Receiver:
    """A CRM endpoint on loopback: answers ``codes`` in turn (then 204), optionally blocking."""

    def __init__(self, codes: list[int] | None = None, block: threading.Event | None = None):
        self.codes, self.block, self.got = list(codes or []), block, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.block is not None:
                    outer.block.wait(30)
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.codes.pop(0) if outer.codes else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


def _sessions(tmp_path):
    engine = db.engine_for(f"sqlite:///{tmp_path / 'svc.db'}")
    return engine, db.sessions(engine)


def _score(Session, customers: dict[str, float], day: str) -> list[dict]:
    frame = pd.DataFrame({"customer_id": list(customers), "probability": list(customers.values()),
                          "band": ["high" if p >= 0.6 else "low" for p in customers.values()]})
    with Session() as session:
        out = record_scores(session, frame, pd.Timestamp(day, tz="UTC"), "v0001",
                            WarnRule(0.6, deliver=True))
        session.commit()
    return out


def test_signature_verifies_and_refuses_tampering_and_replays():
    body = b'{"id": "w_1"}'
    now = 1_700_000_000
    header = sign("k", body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify("k", header, body, now=now + 10)
    assert not verify("k", header, body + b" ", now=now)
    assert not verify("other", header, body, now=now)
    assert not verify("k", header, body, now=now + 301)  # an old signature replayed
    assert not verify("k", "garbage", body, now=now)


def test_crossings_warn_once_per_customer_and_date(tmp_path):
    engine, Session = _sessions(tmp_path)
    first = _score(Session, {"a": 0.7, "b": 0.2}, "2025-01-01")
    assert first[0]["new_warning"] and "warning" not in first[1]
    again = _score(Session, {"a": 0.75, "b": 0.2}, "2025-01-01")  # a rerun of the same date
    assert again[0]["new_warning"] is False
    later = _score(Session, {"a": 0.8, "b": 0.65}, "2025-01-08")  # a stays high, b crosses
    assert "warning" not in later[0] and later[1]["new_warning"]
    with Session() as session:
        rows = session.scalars(select(db.WarningRow)).all()
        history = session.scalars(select(db.ScoreHistoryRow)).all()
    assert sorted((r.customer_id, r.as_of) for r in rows) == [("a", "2025-01-01"),
                                                              ("b", "2025-01-08")]
    assert len(history) == 4 and {r.probability for r in history if r.customer_id == "a"} == {
        0.75, 0.8}
    engine.dispose()


def test_retries_with_backoff_resume_after_restart_and_keep_the_id(tmp_path):
    engine, Session = _sessions(tmp_path)
    receiver = Receiver(codes=[503, 500])
    config = SenderConfig(url=receiver.url, secret="k", backoff_s=0.05, backoff_max_s=0.2)
    wid = _score(Session, {"a": 0.9}, "2025-01-01")[0]["warning"]

    sender = Sender(Session, config)
    assert sender.deliver_due() == 1  # 503
    with Session() as session:
        row = session.get(db.WarningRow, wid)
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 503")
        assert outbox._utc(row.next_attempt_at) > datetime.now(UTC)  # backed off
    assert sender.deliver_due() == 0  # not due yet
    sender.stop()  # the service stops here

    time.sleep(0.12)
    restarted = Sender(Session, config)  # a new process: delivery resumes from the table
    assert restarted.deliver_due() == 1  # 500
    time.sleep(0.25)
    assert restarted.deliver_due() == 1  # 204
    restarted.stop()
    with Session() as session:
        row = session.get(db.WarningRow, wid)
        assert (row.status, row.attempts, row.last_error) == ("delivered", 3, "")
    ids = {h["X-Retention-Warning-Id"] for h, _ in receiver.got}
    attempts = [h["X-Retention-Attempt"] for h, _ in receiver.got]
    assert ids == {wid} and attempts == ["1", "2", "3"]
    assert all(verify("k", h["X-Retention-Signature"], b) for h, b in receiver.got)
    assert json.loads(receiver.got[0][1])["id"] == wid
    receiver.close()
    engine.dispose()


def test_a_receiver_that_stays_down_ends_dead_and_can_be_redelivered(tmp_path):
    engine, Session = _sessions(tmp_path)
    config = SenderConfig(url="http://127.0.0.1:9/nothing-listens", secret="k", backoff_s=0.01,
                          backoff_max_s=0.01, max_attempts=3, timeout_s=1.0)
    wid = _score(Session, {"a": 0.9}, "2025-01-01")[0]["warning"]
    sender = Sender(Session, config)
    for _ in range(3):
        sender.deliver_due()
        time.sleep(0.03)
    with Session() as session:
        row = session.get(db.WarningRow, wid)
        assert row.status == "dead" and row.attempts == 3 and "Connect" in row.last_error
        assert outbox.redeliver(session, wid).status == "pending"
    sender.stop()
    engine.dispose()


def test_a_hanging_receiver_never_holds_up_scoring(tmp_path):
    engine, Session = _sessions(tmp_path)
    block = threading.Event()
    receiver = Receiver(block=block)
    sender = Sender(Session, SenderConfig(url=receiver.url, secret="k", timeout_s=30,
                                          poll_s=0.05))
    sender.start()
    _score(Session, {"a": 0.9}, "2025-01-01")
    sender.wake()
    deadline = time.monotonic() + 5
    while not receiver.server.socket and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the sender is now inside its POST, waiting on the receiver
    # Scores and new warnings are written while the receiver hangs: no lock, no transaction
    # is held across the network call (this hung before, with "database is locked").
    out = _score(Session, {"b": 0.95, "c": 0.1}, "2025-01-01")
    assert out[0]["new_warning"] and not receiver.got
    block.set()
    deadline = time.monotonic() + 10
    while len(receiver.got) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sender.stop()
    receiver.close()
    assert len(receiver.got) == 2
    engine.dispose()


def test_a_webhook_without_a_secret_is_refused_at_start(tmp_path):
    from service.api.services import ConfigError, Services
    from service.settings import Settings

    with pytest.raises(ConfigError, match="RETENTION_WEBHOOK_SECRET"):
        Services.check(Settings(home=tmp_path, webhook_url="http://127.0.0.1:1/x"))
    with pytest.raises(ConfigError, match="HH:MM"):
        Services.check(Settings(home=tmp_path, rescore_at="25:00"))


def test_deliveries_are_listed_newest_first(tmp_path):
    engine, Session = _sessions(tmp_path)
    _score(Session, {"a": 0.9}, "2025-01-01")
    with Session() as session:
        row = session.scalars(select(db.WarningRow)).one()
        row.created_at = datetime.now(UTC) - timedelta(days=1)
        session.commit()
    _score(Session, {"b": 0.9}, "2025-01-02")
    with Session() as session:
        rows = session.scalars(select(db.WarningRow).order_by(
            db.WarningRow.created_at.desc())).all()
        assert [outbox.as_dict(r)["customer_id"] for r in rows] == ["b", "a"]
    engine.dispose()
