"""The service's storage (SQLAlchemy): API keys, events, actions, scores and their history, the
warning outbox, report jobs, the access log and the record of erasures.

SQLite by default, PostgreSQL (or anything SQLAlchemy speaks) by URL. Events are stored in the
canonical columns of ``finetune.contract`` and keyed by event id, so ingesting the same event
twice changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from finetune.contract import EVENT_COLUMNS, validate_events

ROLES = ("crm", "agent", "admin")


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaced_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Set by ``retention keys rotate``: the key that took this one's place."""


class AccessRow(Base):
    """Who read which customer's data: one row per request to a customer route (risk,
    explanation, chat, events, scoring by id), kept ``audit_days``. Erasing a customer
    replaces their id here by its erasure hash: the accountability stays, the id goes."""

    __tablename__ = "access_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    key_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10))
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)


class ErasureRow(Base):
    """That a customer was erased: when, by whom, the id's hash and what was removed; never
    the id or any of their data (``retention train`` drops customers whose hash is here)."""

    __tablename__ = "erasures"
    customer_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(120))
    summary: Mapped[str] = mapped_column(Text, default="")


class EventRow(Base):
    __tablename__ = "events"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # the data clock
    event: Mapped[str] = mapped_column(String(16))
    amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    quantity: Mapped[float | None] = mapped_column(Float, nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    item: Mapped[str | None] = mapped_column(Text, nullable=True)
    rating: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)


class ScoreRow(Base):
    """The latest score per customer, and the one before it (for the trend)."""

    __tablename__ = "scores"
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    probability: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(10))
    previous: Mapped[float | None] = mapped_column(Float, nullable=True)
    cutoff: Mapped[str] = mapped_column(String(10))
    model_version: Mapped[str] = mapped_column(String(100))
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScoreHistoryRow(Base):
    """Every score the service gave, one per customer and as-of date (the page's trend, the
    report's "newly at risk", and the previous score a warning compares with)."""

    __tablename__ = "score_history"
    __table_args__ = (UniqueConstraint("customer_id", "as_of", name="uq_history_customer_as_of"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    as_of: Mapped[str] = mapped_column(String(10), index=True)
    probability: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(10))
    model_version: Mapped[str] = mapped_column(String(100))
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WarningRow(Base):
    """The outbox: a warning is written in the same transaction as the score that raised it and
    delivered later by ``service.outbox``, so a receiver that is down loses nothing. ``id`` is
    stable (customer and as-of date) and is sent with every attempt, for deduplication."""

    __tablename__ = "warnings"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    as_of: Mapped[str] = mapped_column(String(10))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), index=True)  # pending, delivered, dead, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RescoreRunRow(Base):
    """One rescoring of every stored customer at an as-of date (the daily job, or the CLI)."""

    __tablename__ = "rescore_runs"
    as_of: Mapped[str] = mapped_column(String(10), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12))  # running, done, failed
    customers: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ActionRow(Base):
    """One action taken (or a customer deliberately left alone: ``holdout``), in the canonical
    columns of ``finetune.actions``; keyed by ``action_ref`` so recording it twice changes
    nothing. Outcomes are never stored: they are derived from the events when measured."""

    __tablename__ = "actions"
    action_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    action_id: Mapped[str] = mapped_column(String(41))
    source: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ReportJobRow(Base):
    """A report job: survives restarts, so a job running when the service died resumes."""

    __tablename__ = "report_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(12))  # queued, running, done, failed, cancelled
    params: Mapped[str] = mapped_column(Text)  # JSON: top_n, lang, cutoff
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cur.execute("PRAGMA busy_timeout=10000")
            # Deleted rows are overwritten with zeros, not left in free pages (erasure).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()
    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Databases made by an earlier version lack the nullable columns added since (API key
    expiry, last use, rotation): add them, so upgrading needs no migration step."""
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN '
                                      f'"{column.name}" {kind}'))


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def now() -> datetime:
    return datetime.now(UTC)


# ---- API keys ---------------------------------------------------------------------------------
def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, role: str,
               expires_at: datetime | None = None) -> str:
    """Store a new key (hashed) and return it: the only time it is ever shown."""
    return _new_key(session, name, role, expires_at)[1]


def _new_key(session: Session, name: str, role: str,
             expires_at: datetime | None) -> tuple[ApiKey, str]:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is unknown; expected one of {', '.join(ROLES)}")
    prefix = secrets.token_hex(4)
    key = f"ra_{prefix}_{secrets.token_urlsafe(24)}"
    row = ApiKey(name=name, role=role, prefix=prefix, key_hash=_hash(key), created_at=now(),
                 expires_at=expires_at)
    session.add(row)
    session.commit()
    return row, key


def rotate_key(session: Session, key_id: int, grace: float = 0.0) -> tuple[ApiKey, str]:
    """A new key with the old one's name, role and expiry; the old one is revoked now, or
    expires after ``grace`` seconds so clients can switch. Returns the new row and key."""
    from datetime import timedelta

    old = session.get(ApiKey, key_id)
    if old is None or old.revoked:
        raise ValueError(f"no active API key with id {key_id} (see `retention keys list`)")
    row, key = _new_key(session, old.name, old.role, old.expires_at)
    old.replaced_by = row.id
    if grace > 0:
        cut = now() + timedelta(seconds=grace)
        old.expires_at = min(_aware(old.expires_at), cut) if old.expires_at else cut
    else:
        old.revoked = True
    session.commit()
    return row, key


def _aware(ts: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def key_expired(row: ApiKey, at: datetime | None = None) -> bool:
    return row.expires_at is not None and _aware(row.expires_at) <= (at or now())


def find_key(session: Session, key: str) -> ApiKey | None:
    """The active key, compared in constant time; None when unknown, revoked or expired."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "ra":
        return None
    digest = _hash(key)
    found = None
    for row in session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1],
                                                    ApiKey.revoked.is_(False))):
        if hmac.compare_digest(row.key_hash, digest):
            found = row
    return found


LAST_USED_EVERY_S = 60.0  # last-used time is written at most once a minute per key


def record_access(session: Session, key: ApiKey, method: str, route: str,
                  customers: list[str | None]) -> None:
    """Log a read of customers' data (and the key's last use) in its own commit. A request
    naming an erased customer is logged under the erasure's hash: the id is not stored
    again."""
    from service.erasure import customer_hash

    at = now()
    erased = {c: customer_hash(c) for c in customers if c is not None}
    if erased:
        found = set(session.scalars(select(ErasureRow.customer_hash).where(
            ErasureRow.customer_hash.in_(list(erased.values())))))
        customers = [f"erased:{erased[c][:16]}" if c is not None and erased[c] in found
                     else c for c in customers]
    session.add_all([AccessRow(at=at, key_id=key.id, key_name=key.name, role=key.role,
                               method=method, route=route, customer_id=c) for c in customers])
    if key.last_used_at is None or (at - _aware(key.last_used_at)).total_seconds() \
            > LAST_USED_EVERY_S:
        key.last_used_at = at
    session.commit()


def prune_access(session: Session, days: int) -> int:
    """Drop access-log rows older than ``days`` (the retention period)."""
    from datetime import timedelta

    from sqlalchemy import delete

    result = session.execute(delete(AccessRow).where(AccessRow.at < now() - timedelta(days=days)))
    session.commit()
    return int(result.rowcount or 0)


UPSERT_BATCH = 500  # SQLite allows 32,766 bound parameters: 500 rows x 10 columns


def upsert(session: Session, table: type[Base], records: list[dict], keys: list[str]) -> None:
    """Insert rows, replacing those whose ``keys`` exist (part of the caller's transaction)."""
    if not records:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        # One INSERT ... ON CONFLICT per batch: ~100x faster than an ORM merge per row.
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        cols = [c for c in records[0] if c not in keys]
        for start in range(0, len(records), UPSERT_BATCH):
            stmt = insert(table).values(records[start:start + UPSERT_BATCH])
            session.execute(stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in cols}))
    else:
        for record in records:
            session.merge(table(**record))


# ---- events -----------------------------------------------------------------------------------
def upsert_events(session: Session, events: pd.DataFrame) -> int:
    """Store canonical events; an event id already stored is replaced. Returns rows written."""
    rows = events[list(EVENT_COLUMNS)].astype(object).where(events.notna(), None)
    records = rows.to_dict("records")
    for record in records:
        record["event"] = str(record["event"])
        record["ts"] = pd.Timestamp(record["ts"]).to_pydatetime()
    upsert(session, EventRow, records, ["event_id"])
    session.commit()
    return len(rows)


def event_owners(session: Session, event_ids: list[str]) -> dict[str, str]:
    """The customer each of these stored event ids belongs to."""
    found: dict[str, str] = {}
    for start in range(0, len(event_ids), UPSERT_BATCH):
        found.update(session.execute(select(EventRow.event_id, EventRow.customer_id).where(
            EventRow.event_id.in_(event_ids[start:start + UPSERT_BATCH]))).tuples().all())
    return found


def load_events(session: Session, customers: list[str] | None = None) -> pd.DataFrame:
    query = select(EventRow)
    if customers is not None:
        query = query.where(EventRow.customer_id.in_(customers))
    frame = pd.read_sql(query, session.connection())
    if frame.empty:
        frame = pd.DataFrame(columns=list(EVENT_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return validate_events(frame, "database")[0]


# ---- actions ----------------------------------------------------------------------------------
def upsert_actions(session: Session, actions: pd.DataFrame) -> int:
    """Store canonical actions (``finetune.actions``); an ``action_ref`` already stored is
    replaced, like an event id. Returns rows written."""
    from finetune.actions import ACTION_COLUMNS

    rows = actions[list(ACTION_COLUMNS)].astype(object).where(actions.notna(), None)
    records = rows.to_dict("records")
    for record in records:
        record["ts"] = pd.Timestamp(record["ts"]).to_pydatetime()
    upsert(session, ActionRow, records, ["action_ref"])
    session.commit()
    return len(records)


def add_holdouts(session: Session, customer_ids: list[str], period: str,
                 as_of: pd.Timestamp) -> int:
    """Record that these customers are held out in ``period`` (part of the caller's
    transaction). One row per customer and period, dated the first day it was recorded: later
    days of the same period never move it (the outcome window starts then)."""
    from finetune.actions import HOLDOUT

    refs = {holdout_ref(c, period): c for c in customer_ids}
    if not refs:
        return 0
    known = set(session.scalars(select(ActionRow.action_ref).where(
        ActionRow.action_ref.in_(list(refs)))))
    when = pd.Timestamp(as_of).to_pydatetime()
    for ref, cid in refs.items():
        if ref not in known:
            session.add(ActionRow(action_ref=ref, customer_id=cid, ts=when, action_id=HOLDOUT,
                                  source="random", cost=0.0, agent="experiment"))
    session.flush()
    return len(refs) - len(known)


def holdout_ref(customer_id: str, period: str) -> str:
    return "h" + hashlib.sha256(f"{period}|{customer_id}".encode()).hexdigest()[:20]


def load_actions(session: Session, customers: list[str] | None = None) -> pd.DataFrame:
    from finetune.actions import ACTION_COLUMNS, validate_actions

    query = select(ActionRow)
    if customers is not None:
        query = query.where(ActionRow.customer_id.in_(customers))
    frame = pd.read_sql(query, session.connection())
    if frame.empty:
        frame = pd.DataFrame(columns=list(ACTION_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return validate_actions(frame, "database")[0]


def count_actions(session: Session) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(ActionRow)) or 0)


def newest_event(session: Session) -> pd.Timestamp | None:
    """When the stored history ends (the ``data`` clock's reference)."""
    from sqlalchemy import func

    value = session.scalar(select(func.max(EventRow.ts)))
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def stored_customers(session: Session) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count(func.distinct(EventRow.customer_id)))) or 0)
