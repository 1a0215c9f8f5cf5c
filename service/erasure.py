"""Erasing a customer from every place the service keeps data, and proving it byte by byte.

A customer's data lives in the database (events, scores and their history, warnings, actions,
the access log), in the Chroma store (their documents, and Chroma's own write-ahead log), in
files under the home (report CSV/Parquet/HTML and their chunks, the rescoring work folder, event
files such as the demo's) and in memory (the explanation cache). ``forget`` removes it from all
of them and then scans every file under the home for the customer's id and their own words
(review, ticket and note text), decoding Parquet and gzip, so "erased" is a measured fact, not a
hope. What it cannot clean it reports as ``remaining``, and the CLI exits non-zero.

Deleted rows do not vanish from disk by themselves: SQLite keeps them in free pages and in its
WAL (the service sets ``PRAGMA secure_delete`` and here checkpoints and VACUUMs), PostgreSQL
keeps dead tuples until ``VACUUM`` (here ``VACUUM FULL`` rewrites the tables; see
docs/privacy.md for WAL archives and backups), and Chroma keeps every write in its own log
(here the collection is rebuilt from its remaining vectors and its SQLite file vacuumed).

The erasure itself is recorded with the id's hash, the time and the actor: never the id.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from service import db

MIN_TEXT = 8  # shorter words ("ok", "late") are not theirs alone: not searched for
PER_CUSTOMER = (db.EventRow, db.ScoreRow, db.ScoreHistoryRow, db.WarningRow, db.ActionRow)
SCRATCH = ("rescore",)  # folders under the home that are work space, rebuilt when needed


def customer_hash(customer_id: str) -> str:
    """The erasure record's key: stable, so ``retention train`` can drop an erased customer
    from a file it is given, without keeping the id."""
    return hashlib.sha256(f"retention-erasure\x1f{customer_id}".encode()).hexdigest()


@dataclass
class ErasureReport:
    customer_hash: str
    rows: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    cached: int = 0
    files_rewritten: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


def needles(session: Session, customer_id: str) -> list[bytes]:
    """What must not survive: the id and each of their own texts (UTF-8). A text another
    customer wrote word for word too ("Great, thanks!") identifies no one and stays with
    the other customer, so it is not searched for."""
    texts = session.scalars(select(db.EventRow.text).where(
        db.EventRow.customer_id == customer_id, db.EventRow.text.is_not(None)))
    words = {t for t in texts if t and len(t.strip()) >= MIN_TEXT}
    shared: set[str] = set()
    listed = sorted(words)
    for start in range(0, len(listed), 500):
        shared |= set(session.scalars(select(db.EventRow.text).distinct().where(
            db.EventRow.text.in_(listed[start:start + 500]),
            db.EventRow.customer_id != customer_id)))
    return [customer_id.encode()] + sorted(w.strip().encode() for w in words - shared)


# ---- the database -------------------------------------------------------------------------
def erase_rows(session: Session, customer_id: str, actor: str, digest: str) -> dict[str, int]:
    """One transaction: every row of the customer, their access-log id replaced by the hash,
    and the erasure record."""
    counts: dict[str, int] = {}
    for table in PER_CUSTOMER:
        result = session.execute(delete(table).where(table.customer_id == customer_id))
        counts[table.__tablename__] = int(result.rowcount or 0)
    result = session.execute(update(db.AccessRow).where(db.AccessRow.customer_id == customer_id)
                             .values(customer_id=f"erased:{digest[:16]}"))
    counts["access_log (id replaced)"] = int(result.rowcount or 0)
    session.merge(db.ErasureRow(customer_hash=digest, erased_at=db.now(), actor=actor[:120],
                                summary=json.dumps(counts)))
    session.commit()
    return counts


def compact_database(engine, tables: Iterable[str]) -> None:
    """Make deleted bytes unrecoverable from the database files: SQLite is checkpointed (the
    WAL truncated to zero bytes) and VACUUMed; PostgreSQL's tables are rewritten with
    ``VACUUM FULL`` (dead tuples gone from the table files)."""
    dialect = engine.dialect.name
    engine.dispose()  # pooled connections would hold the WAL open
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if dialect == "sqlite":
            # VACUUM writes the rebuilt file through the WAL: the old pages stay in the main
            # file until a checkpoint copies the new ones over, and a reader can hold it back.
            _checkpoint(conn)
            conn.exec_driver_sql("VACUUM")
            _checkpoint(conn)
        elif dialect == "postgresql":
            for table in tables:
                conn.execute(text(f'VACUUM (FULL, ANALYZE) "{table}"'))


def _checkpoint(conn, tries: int = 100) -> None:
    for _ in range(tries):
        busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
        if busy is None or busy[0] == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("the SQLite WAL could not be checkpointed: a reader held it for 5 s")


# ---- files under the home -----------------------------------------------------------------
def _contains(data: bytes, found: list[bytes]) -> bool:
    return any(n in data for n in found)


def file_holds(path: Path, found: list[bytes]) -> bool:
    """Whether the file's bytes, or its decoded content (Parquet, gzip), hold any needle."""
    data = path.read_bytes()
    if _contains(data, found):
        return True
    if path.suffix == ".gz":
        try:
            return _contains(gzip.decompress(data), found)
        except (OSError, EOFError):
            return False
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - not readable as Parquet: the raw bytes decided
            return False
        return _contains(frame.to_csv(index=False).encode(), found)
    return False


def _rewrite_table(path: Path, customer_id: str) -> bool:
    """Rewrite a CSV/Parquet file without the customer's rows (atomically); False when the
    file is not a table with a ``customer_id`` column."""
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, dtype={"customer_id": str}, keep_default_na=False)
        else:
            return False
    except Exception:  # noqa: BLE001
        return False
    if "customer_id" not in frame.columns:
        return False
    kept = frame[frame["customer_id"].astype(str) != customer_id].copy()
    for col in kept.columns:  # a categorical column keeps dropped values in its dictionary
        if isinstance(kept[col].dtype, pd.CategoricalDtype):
            kept[col] = kept[col].cat.remove_unused_categories()
    tmp = path.with_name(path.name + ".erasing")
    if path.suffix == ".parquet":
        kept.to_parquet(tmp, index=False)
    else:
        kept.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    tmp.replace(path)
    return True


def clean_files(home: Path, customer_id: str, found: list[bytes], skip: Iterable[Path]
                ) -> tuple[list[str], list[str]]:
    """Rewrite the tables under ``home`` that hold the customer and remove the other files
    that do (an HTML report, a report chunk); scratch folders go whole. Returns (rewritten,
    removed), paths relative to the home."""
    rewritten: list[str] = []
    removed: list[str] = []
    for name in SCRATCH:
        if (home / name).exists():
            shutil.rmtree(home / name)
            removed.append(f"{name}/")
    skipped = [p.resolve() for p in skip]
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        if any(path.resolve() == s or s in path.resolve().parents for s in skipped):
            continue
        if not file_holds(path, found):
            continue
        rel = str(path.relative_to(home))
        if _rewrite_table(path, customer_id) and not file_holds(path, found):
            rewritten.append(rel)
        else:
            path.unlink()
            removed.append(rel)
    return rewritten, removed


def scan(home: Path, found: list[bytes]) -> list[str]:
    """Every file under ``home`` that still holds a needle (databases and Chroma included)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if p.is_file() and file_holds(p, found))


# ---- all of it ----------------------------------------------------------------------------
def forget(Session: sessionmaker[Session], customer_id: str, actor: str, home: Path,
           store=None, forget_cached: Callable[[str], int] | None = None,
           store_path: Path | None = None) -> ErasureReport:
    """Erase ``customer_id`` everywhere. ``store`` is an open ``ContextStore`` (the service's)
    or None to open the one at ``store_path`` when it exists."""
    started = time.perf_counter()
    digest = customer_hash(customer_id)
    report = ErasureReport(customer_hash=digest)
    with Session() as session:
        found = needles(session, customer_id)
        report.rows = erase_rows(session, customer_id, actor, digest)
        engine = session.get_bind()
    compact_database(engine, [t.__tablename__ for t in PER_CUSTOMER] + ["access_log"])
    if store is None and store_path is not None and (store_path / "chroma.sqlite3").exists():
        from assistant.retrieval import ContextStore

        store = ContextStore(store_path)
    if store is not None:
        report.documents = store.forget(customer_id)
    if forget_cached is not None:
        report.cached = forget_cached(customer_id)
    skip = [store.path] if store is not None else []
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database:
        skip.append(Path(url.database).parent / Path(url.database).name)
        skip += [Path(str(url.database) + s) for s in ("-wal", "-shm", "-journal")]
    if home.exists():
        report.files_rewritten, report.files_removed = clean_files(home, customer_id, found,
                                                                   skip)
        report.remaining = scan(home, found)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def erased_hashes(Session: sessionmaker[Session]) -> set[str]:
    with Session() as session:
        return set(session.scalars(select(db.ErasureRow.customer_hash)))


def drop_erased(events: pd.DataFrame, hashes: set[str]) -> tuple[pd.DataFrame, int]:
    """Events without the erased customers (``retention train`` and ``load``); returns the
    kept events and how many customers were dropped."""
    if not hashes or events.empty:
        return events, 0
    ids = pd.Series(events["customer_id"].astype(str).unique())
    gone = set(ids[ids.map(customer_hash).isin(hashes)])
    if not gone:
        return events, 0
    return events[~events["customer_id"].astype(str).isin(gone)], len(gone)
