"""Report jobs for the API: queued in the database, run one at a time by a background worker.

A job's state lives in the ``report_jobs`` table, and ``run_report`` keeps finished chunks on
disk, so a service that is killed mid-report picks the job up again at start-up and carries on
where it stopped. The worker is a daemon thread: stopping the service never waits for a report.
"""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from service import db
from service.reports import Interrupted, ReportConfig, run_report

if TYPE_CHECKING:
    from service.api.services import Services

REPORT_FILES = ("risk_report.html", "risk_report.csv", "risk_report.parquet")


class TooManyJobs(RuntimeError):
    """A key asked for more report jobs than it may have at once."""


@dataclass
class ReportJobs:
    services: Services
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _worker: threading.Thread | None = None
    _start_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop at the next customer boundary and wait for the worker (a thread still inside
        torch when the interpreter exits aborts the process); the job is queued again."""
        self._stop.set()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)

    def folder(self, job_id: str) -> Path:
        return self.services.settings.reports_path / job_id

    def submit(self, params: dict, key_id: int | None = None) -> db.ReportJobRow:
        """Queue a job; raises ``TooManyJobs`` when the key already has the most it may have
        queued or running (``RETENTION_MAX_REPORT_JOBS``)."""
        limit = self.services.settings.max_report_jobs
        with self.services.Session() as session:
            active = session.scalar(select(func.count()).select_from(db.ReportJobRow).where(
                db.ReportJobRow.key_id == key_id,
                db.ReportJobRow.status.in_(("queued", "running")))) or 0
            if key_id is not None and active >= limit:
                raise TooManyJobs(f"this key has {active} report job(s) queued or running; the "
                                  f"limit is {limit} (RETENTION_MAX_REPORT_JOBS): wait for one "
                                  "or cancel it (DELETE /v1/reports/{id})")
            row = db.ReportJobRow(id=secrets.token_hex(8), status="queued",
                                  params=json.dumps(params), created_at=db.now(),
                                  key_id=key_id)
            session.add(row)
            session.commit()
        self._enqueue(row.id)
        return row

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job (a running one stops at its next chunk or card and
        its work folder is removed); returns the job's status afterwards."""
        with self.services.Session() as session:
            row = session.get(db.ReportJobRow, job_id)
            if row is None:
                raise KeyError(job_id)
            if row.status in ("queued", "running"):
                row.status, row.finished_at = "cancelled", db.now()
                session.commit()
            return row.status

    def _cancelled(self, job_id: str) -> bool:
        with self.services.Session() as session:
            row = session.get(db.ReportJobRow, job_id)
            return row is None or row.status == "cancelled"

    def resume_unfinished(self) -> list[str]:
        """Jobs that were queued or running when the service stopped go back in the queue."""
        with self.services.Session() as session:
            ids = list(session.scalars(select(db.ReportJobRow.id).where(
                db.ReportJobRow.status.in_(("queued", "running"))).order_by(
                db.ReportJobRow.created_at)))
        for job_id in ids:
            self._enqueue(job_id)
        return ids

    def _enqueue(self, job_id: str) -> None:
        if self._stop.is_set():
            return  # stopping: the job stays queued in the database for the next start
        self._queue.put(job_id)
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="report-jobs", daemon=True)
                self._worker.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is not None:
                self.run(job_id)

    def _update(self, job_id: str, **values) -> None:
        with self.services.Session() as session:
            row = session.get(db.ReportJobRow, job_id)
            if row is not None and row.status != "cancelled":
                for key, value in values.items():
                    setattr(row, key, value)
                session.commit()

    def _previous(self, ids: list[str], as_of: str) -> dict[str, float]:
        from service.scores import previous_scores

        with self.services.Session() as session:
            return previous_scores(session, ids, as_of)

    def run(self, job_id: str) -> None:
        with self.services.Session() as session:
            row = session.get(db.ReportJobRow, job_id)
            if row is None or row.status in ("done", "failed", "cancelled"):
                return
            params = json.loads(row.params)
        self._update(job_id, status="running")
        try:
            with self.services.Session() as session:
                events = self.services.events(session)
            if events.empty:
                raise ValueError("no events are stored: ingest events before asking for a report")
            run_report(self.services.assistant, events, self.folder(job_id), ReportConfig(**params),
                       progress=lambda done, total: self._update(job_id, done=done, total=total),
                       lock=self.services.gate,
                       should_stop=lambda: self._stop.is_set() or self._cancelled(job_id),
                       previous=self._previous)
            if self._cancelled(job_id):
                raise Interrupted("cancelled")
            self._update(job_id, status="done", finished_at=db.now())
        except Interrupted:
            if self._cancelled(job_id):
                shutil.rmtree(self.folder(job_id), ignore_errors=True)
            else:
                self._update(job_id, status="queued")
        except Exception as exc:  # noqa: BLE001 - any failure is reported on the job, not lost
            self._update(job_id, status="failed", finished_at=db.now(),
                         error=f"{type(exc).__name__}: {exc}"[:1000])
