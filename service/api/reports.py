"""Report jobs under /v1/reports: start one, follow its progress, download its files (admin)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from service import db
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem
from service.jobs import REPORT_FILES, TooManyJobs

reports_key = require("reports")  # one callable: FastAPI runs it once per request
router = APIRouter(prefix="/v1/reports", tags=["reports"], dependencies=[Depends(reports_key)])
JobId = Annotated[str, Path(min_length=1, max_length=32, pattern="^[0-9a-f]+$")]
FileName = Literal["risk_report.html", "risk_report.csv", "risk_report.parquet"]
MEDIA = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8",
         "parquet": "application/vnd.apache.parquet"}


class ReportRequest(BaseModel):
    top_n: int = Field(20, ge=0, le=500, description="customers with a full explanation card")
    lang: Literal["en", "zh"] = "en"
    cutoff: date | None = Field(None, description="as-of date; default: the service's")


class ReportJob(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int = Field(description="customers scored and explained so far")
    total: int
    error: str = ""
    params: dict
    files: dict[str, str] = Field(default_factory=dict, description="download paths when done")


def _view(row: db.ReportJobRow) -> ReportJob:
    files = ({name.split(".")[-1]: f"/v1/reports/{row.id}/files/{name}" for name in REPORT_FILES}
             if row.status == "done" else {})
    return ReportJob(id=row.id, status=row.status, done=row.done, total=row.total,  # type: ignore[arg-type]
                     error=row.error, params=json.loads(row.params), files=files)


def _job(session: SessionDep, job_id: str) -> db.ReportJobRow:
    row = session.get(db.ReportJobRow, job_id)
    if row is None:
        raise Problem(404, "Unknown report job", f"there is no report job {job_id!r}")
    return row


@router.post("", status_code=202, response_model=ReportJob,
             responses={429: {"description": "this key has the most report jobs it may have "
                              "queued or running", "content": {"application/problem+json": {}}}})
def start_report(body: ReportRequest, services: ServicesDep,
                 key: Annotated[db.ApiKey, Depends(reports_key)]) -> ReportJob:
    """Queue a report over every stored customer; poll its status, then download the files.
    Each key may have ``RETENTION_MAX_REPORT_JOBS`` jobs queued or running at once."""
    params = {"top_n": body.top_n, "lang": body.lang,
              "cutoff": (body.cutoff or services.as_of().date()).isoformat()}
    try:
        return _view(services.jobs.submit(params, key_id=key.id))
    except TooManyJobs as exc:
        raise Problem(429, "Too many report jobs", str(exc), headers={"Retry-After": "60"}) \
            from exc


@router.delete("/{job_id}", response_model=ReportJob,
               responses={404: {"description": "unknown job",
                                "content": {"application/problem+json": {}}}})
def cancel_report(job_id: JobId, services: ServicesDep, session: SessionDep) -> ReportJob:
    """Cancel a queued or running job (a finished one is left as it is)."""
    _job(session, job_id)
    services.jobs.cancel(job_id)
    session.expire_all()
    return _view(_job(session, job_id))


@router.get("/{job_id}", response_model=ReportJob)
def report_status(job_id: JobId, session: SessionDep) -> ReportJob:
    return _view(_job(session, job_id))


@router.get("/{job_id}/files/{name}", response_class=FileResponse,
            responses={200: {"content": {m: {} for m in MEDIA.values()}},
                       409: {"description": "the report is not finished"}})
def report_file(job_id: JobId, name: FileName, services: ServicesDep,
                session: SessionDep) -> FileResponse:
    row = _job(session, job_id)
    if row.status != "done":
        raise Problem(409, "Report not ready", f"job {job_id} is {row.status}"
                      + (f": {row.error}" if row.error else "; poll its status"))
    path = services.jobs.folder(job_id) / name
    if not path.exists():
        raise Problem(410, "Report file gone", f"{name} of job {job_id} was removed from disk")
    return FileResponse(path, media_type=MEDIA[name.rsplit(".", 1)[1]], filename=name)
