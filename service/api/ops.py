"""Routes that run the live service: its clock, the rescoring of everyone, warning deliveries."""

from __future__ import annotations

import logging
import threading
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from service import db, outbox
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem

router = APIRouter(prefix="/v1", tags=["operations"])
log = logging.getLogger("retention.service")


class ClockView(BaseModel):
    as_of: str = Field(description="the date every score is as of (events before it are read)")
    mode: str = Field(description="today, data, or a fixed date (RETENTION_AS_OF)")
    controllable: bool


class ClockSet(BaseModel):
    as_of: str = Field(description="today, data, or a date YYYY-MM-DD")


class RescoreRun(BaseModel):
    as_of: str
    model_version: str
    status: str
    customers: int
    warnings: int
    error: str = ""
    started_at: str
    finished_at: str | None = None


class Delivery(BaseModel):
    id: str
    customer_id: str
    as_of: str
    status: Literal["pending", "delivered", "dead", "skipped"]
    attempts: int
    last_error: str
    created_at: str
    next_attempt_at: str
    delivered_at: str | None = None


def _clock(services: ServicesDep) -> ClockView:
    return ClockView(as_of=services.as_of().date().isoformat(), mode=services.clock.mode,
                     controllable=services.settings.clock_control)


@router.get("/clock", response_model=ClockView, dependencies=[Depends(require("score"))])
def get_clock(services: ServicesDep) -> ClockView:
    """The as-of date of every answer right now."""
    return _clock(services)


@router.put("/clock", response_model=ClockView, dependencies=[Depends(require("admin"))],
            responses={409: {"description": "the clock is not controllable"}})
def set_clock(body: ClockSet, services: ServicesDep) -> ClockView:
    """Move the as-of date (replays and backfills; needs RETENTION_CLOCK_CONTROL=true)."""
    if not services.settings.clock_control:
        raise Problem(409, "Clock not controllable", "the as-of date follows RETENTION_AS_OF; "
                      "start the service with RETENTION_CLOCK_CONTROL=true to move it")
    try:
        services.clock.set(body.as_of)
    except ValueError as exc:
        raise Problem(422, "Invalid as-of date", str(exc), field="as_of") from exc
    return _clock(services)


def _run_view(row: db.RescoreRunRow) -> RescoreRun:
    return RescoreRun(as_of=row.as_of, model_version=row.model_version, status=row.status,
                      customers=row.customers, warnings=row.warnings, error=row.error,
                      started_at=row.started_at.isoformat(),
                      finished_at=row.finished_at.isoformat() if row.finished_at else None)


@router.post("/rescore", status_code=202, response_model=RescoreRun,
             dependencies=[Depends(require("admin"))],
             responses={200: {"description": "finished (wait=true)", "model": RescoreRun},
                        409: {"description": "a rescoring is running"}})
def rescore(services: ServicesDep, session: SessionDep,
            wait: Annotated[bool, Query(description="answer when it has finished")] = False,
            force: Annotated[bool, Query(description="rerun a finished date")] = False):
    """Rescore every stored customer at the as-of date now (what the daily job does)."""
    as_of = services.as_of()
    day = as_of.date().isoformat()
    if wait:
        if services.rescore_busy():
            raise Problem(409, "Rescoring running", "another rescoring is running; try later")
        services.rescore_all(as_of, force=force)
        session.expire_all()
        return JSONResponse(_run_view(session.get(db.RescoreRunRow, day)).model_dump())
    if services.rescore_busy():
        raise Problem(409, "Rescoring running", "another rescoring is running; poll "
                      "GET /v1/rescore/runs")
    threading.Thread(target=_rescore_in_background, args=(services, as_of, force),
                     name="rescore-now", daemon=True).start()
    return RescoreRun(as_of=day, model_version=services.model_version, status="running",
                      customers=0, warnings=0, started_at=db.now().isoformat())


def _rescore_in_background(services: ServicesDep, as_of, force: bool) -> None:
    """The run's row records a failure or a stop (it resumes on the next run); log it here."""
    try:
        services.rescore_all(as_of, force=force)
    except InterruptedError as exc:
        log.info("rescoring stopped with the service: %s", exc)
    except Exception:
        log.exception("rescoring failed")


@router.get("/rescore/runs", response_model=list[RescoreRun],
            dependencies=[Depends(require("admin"))])
def rescore_runs(session: SessionDep,
                 limit: Annotated[int, Query(ge=1, le=365)] = 30) -> list[RescoreRun]:
    """Recent rescorings, newest as-of date first."""
    rows = session.scalars(select(db.RescoreRunRow).order_by(db.RescoreRunRow.as_of.desc())
                           .limit(limit))
    return [_run_view(r) for r in rows]


@router.get("/webhooks/deliveries", response_model=list[Delivery],
            dependencies=[Depends(require("admin"))])
def deliveries(session: SessionDep,
               status: Annotated[Literal["pending", "delivered", "dead", "skipped"] | None,
                                 Query()] = None,
               customer_id: Annotated[str | None, Query(max_length=64)] = None,
               since: Annotated[date | None, Query(description="as-of dates from")] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Delivery]:
    """Recent warnings with their delivery status, attempts and last error."""
    query = select(db.WarningRow).order_by(db.WarningRow.created_at.desc()).limit(limit)
    if status:
        query = query.where(db.WarningRow.status == status)
    if customer_id:
        query = query.where(db.WarningRow.customer_id == customer_id)
    if since:
        query = query.where(db.WarningRow.as_of >= since.isoformat())
    return [Delivery(**outbox.as_dict(r)) for r in session.scalars(query)]


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", response_model=Delivery,
             dependencies=[Depends(require("admin"))],
             responses={404: {"description": "no such warning"},
                        409: {"description": "no webhook URL is configured"}})
def redeliver(delivery_id: Annotated[str, Path(min_length=1, max_length=40)],
              services: ServicesDep, session: SessionDep) -> Delivery:
    """Send a warning again (same id), e.g. after a receiver was fixed."""
    if services.sender is None:
        raise Problem(409, "No webhook", "RETENTION_WEBHOOK_URL is not set: nothing to send to")
    row = outbox.redeliver(session, delivery_id)
    if row is None:
        raise Problem(404, "Unknown warning", f"there is no warning {delivery_id!r}")
    services.sender.wake()
    return Delivery(**outbox.as_dict(row))
