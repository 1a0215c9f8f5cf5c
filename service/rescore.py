"""Rescoring every stored customer at one as-of date: the job behind warnings for silence.

A customer who simply stops buying sends no event, so scoring only on ingestion never warns
about the commonest way to churn. This job scores everyone at the service's as-of date with the
bulk scorer's code (``assistant.stream``: the stored events are exported once to Parquet,
split by customer hash, and scored a partition at a time, so memory depends on the partition
size, not on the shop), stores each score in the history and raises a warning for each upward
crossing of the threshold, whatever caused it.

Resumable: partitions already stored are marked in the work folder, so a run that was killed
carries on where it stopped (unless events changed meanwhile: then it starts over). Idempotent:
a finished run for the same as-of date and model changes nothing when asked again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from assistant.experiment import ExperimentConfig, assign
from assistant.scoring import Scorer
from assistant.stream import PARTITION_SCHEMA, StreamConfig, partition_events, score_partition
from finetune.actions import HOLDOUT
from service import db
from service.scores import WarnRule, record_scores

EXPORT_BATCH = 100_000
Progress = Callable[[int, int, str], None]


@dataclass
class RescoreSummary:
    as_of: str
    model_version: str
    customers: int
    warnings: int
    partitions: int
    resumed_partitions: int
    seconds: float
    skipped: bool = False  # already done for this date and model: nothing changed

    def to_dict(self) -> dict:
        return asdict(self)


def export_events(Session: sessionmaker[Session], path: Path,
                  batch: int = EXPORT_BATCH) -> int:
    """Stream the stored events into one Parquet file (canonical columns), batch by batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in PARTITION_SCHEMA.names]
    n = 0
    with Session() as session, pq.ParquetWriter(path, PARTITION_SCHEMA) as writer:
        result = session.execute(select(*[getattr(db.EventRow, c) for c in cols])
                                 .execution_options(yield_per=batch))
        for rows in result.partitions(batch):
            frame = pd.DataFrame(rows, columns=cols)
            ts = pd.to_datetime(frame["ts"])
            frame["ts"] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
            writer.write_table(pa.Table.from_pandas(frame, schema=PARTITION_SCHEMA,
                                                    preserve_index=False))
            n += len(frame)
    return n


def _signature(session: Session) -> list:
    """What a resumed run must find unchanged: the number of events and the newest one."""
    count, newest = session.execute(select(func.count(), func.max(db.EventRow.ts))).one()
    return [int(count), str(newest)]


def rescore_all(Session: sessionmaker[Session], scorer: Scorer, as_of: pd.Timestamp,
                rule: WarnRule, workdir: Path, gate: AbstractContextManager | None = None,
                chunk_customers: int = 256, force: bool = False,
                progress: Progress | None = None,
                should_stop: Callable[[], bool] = lambda: False,
                experiment: ExperimentConfig | None = None) -> RescoreSummary:
    """Score every eligible stored customer at ``as_of``; store scores and warnings, and, with
    an ``experiment``, the holdout rows of the at-risk customers it holds out."""
    started = time.time()
    version = scorer.model.directory.name
    day = as_of.date().isoformat()
    gate = gate or nullcontext()
    with Session() as session:
        run = session.get(db.RescoreRunRow, day)
        if run is not None and run.status == "done" and run.model_version == version and not force:
            return RescoreSummary(day, version, run.customers, 0, 0, 0, 0.0, skipped=True)
        signature = _signature(session)
        run_start = db.now()
        if run is None:
            run = db.RescoreRunRow(as_of=day, model_version=version, status="running",
                                   started_at=run_start)
            session.add(run)
        else:
            run.status, run.model_version, run.started_at, run.error = ("running", version,
                                                                        run_start, "")
        session.commit()
    work = workdir / f"{day}-{version}"
    meta_path = work / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta is None or meta["signature"] != signature:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        export_events(Session, work / "events.parquet")
        parted = partition_events(work / "events.parquet", work / "parts",
                                  StreamConfig(chunk_customers=chunk_customers, precision="fp32"))
        meta = {"signature": signature, "parts": [p.name for p in parted.parts],
                "read_at": run_start.isoformat(), "done": []}
        meta_path.write_text(json.dumps(meta))
        (work / "events.parquet").unlink()
        with Session() as session:  # a fresh start counts from zero
            row = session.get(db.RescoreRunRow, day)
            row.customers = row.warnings = 0
            session.commit()
    read_at = pd.Timestamp(meta["read_at"]).to_pydatetime()
    resumed = len(meta["done"])
    customers = warnings = 0
    try:
        for k, name in enumerate(meta["parts"]):
            if name in meta["done"]:
                continue
            if should_stop():
                raise InterruptedError(f"stopped after {k} of {len(meta['parts'])} partitions")
            with gate:
                frame = score_partition(scorer.model, work / "parts" / name, as_of,
                                        scorer.bands, scorer.kind)
            with Session() as session:
                records = record_scores(session, frame, as_of, version, rule,
                                        unless_scored_since=read_at)
                if experiment is not None:
                    held = [(r.customer_id, a.period) for r in frame.itertuples()
                            if (a := assign(r.customer_id, float(r.probability), as_of,
                                            experiment)).arm == HOLDOUT]
                    for period in {p for _, p in held}:
                        db.add_holdouts(session, [c for c, p in held if p == period], period,
                                        as_of)
                new = sum(1 for r in records if r.get("new_warning"))
                row = session.get(db.RescoreRunRow, day)
                row.customers += len(records)
                row.warnings += new
                session.commit()  # the partition's scores, warnings and counts together
            customers += len(records)
            warnings += new
            meta["done"].append(name)
            meta_path.write_text(json.dumps(meta))
            if progress:
                progress(k + 1, len(meta["parts"]), "rescoring")
    except BaseException as exc:
        with Session() as session:
            row = session.get(db.RescoreRunRow, day)
            row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"[:1000]
            session.commit()
        raise
    with Session() as session:
        row = session.get(db.RescoreRunRow, day)
        row.status, row.finished_at = "done", db.now()
        session.commit()
        total = row.customers
    shutil.rmtree(work, ignore_errors=True)
    return RescoreSummary(day, version, total, warnings, len(meta["parts"]), resumed,
                          round(time.time() - started, 2))
