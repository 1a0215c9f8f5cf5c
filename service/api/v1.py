"""Routes under /v1: risk, batch scoring, explanations and event ingestion."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, Path, Query

from assistant import wording
from assistant.attributions import attribute
from assistant.schema import Explanation
from finetune.contract import validate_events
from finetune.labels import as_cutoff
from service import db
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem
from service.api.schemas import (
    CustomerScore,
    Driver,
    IngestRequest,
    IngestResponse,
    RiskResponse,
    ScoreRequest,
    ScoreResponse,
)

router = APIRouter(prefix="/v1")
CustomerId = Annotated[str, Path(min_length=1, max_length=64)]


def _events_frame(rows: list, source: str) -> pd.DataFrame:
    frame = pd.DataFrame([r.model_dump() for r in rows])
    return validate_events(frame, source, row_offset=0, row_label="item")[0]


def _customer_events(services: ServicesDep, session: SessionDep, cid: str) -> pd.DataFrame:
    events = services.events(session, [cid])
    if events.empty:
        raise Problem(404, "Unknown customer", f"no events are stored for customer {cid!r}")
    return events


@router.get("/customers/{customer_id}/risk", response_model=RiskResponse,
            dependencies=[Depends(require("score"))])
def risk(customer_id: CustomerId, services: ServicesDep, session: SessionDep) -> RiskResponse:
    """The churn risk of one stored customer now, with the events that drive it (no LLM)."""
    events = _customer_events(services, session, customer_id)
    with services.model_lock:
        scored = services.scorer.customer(events, customer_id)
        drivers = wording.drivers(attribute(services.scorer, scored))
    previous = services.latest_score(session, customer_id)
    return RiskResponse(customer_id=customer_id, probability=scored.probability,
                        band=scored.band, cutoff=scored.cutoff.date().isoformat(),
                        model_version=services.model_version,
                        previous=previous.probability if previous else None,
                        reasons=[Driver(evidence_id=a.sid, text=a.text,
                                        contribution=a.contribution) for a in drivers])


@router.post("/score", response_model=ScoreResponse, dependencies=[Depends(require("score"))])
def score(body: ScoreRequest, services: ServicesDep, session: SessionDep) -> ScoreResponse:
    """Score many customers: stored ones by id, or anyone from inline events."""
    if body.events is not None:
        events = _events_frame(body.events, "events")
        ids = list(dict.fromkeys(events["customer_id"].tolist()))
        unknown: list[str] = []
    else:
        ids = list(dict.fromkeys(body.customer_ids or []))
        events = services.events(session, ids)
        known = set(events["customer_id"])
        unknown = [c for c in ids if c not in known]
        ids = [c for c in ids if c in known]
    cutoff = as_cutoff(pd.Timestamp(body.cutoff)) if body.cutoff else None
    scores = []
    if ids:
        with services.model_lock:
            frame = services.scorer.score(events, cutoff=cutoff, customers=ids)
        scores = [CustomerScore(customer_id=r.customer_id, probability=float(r.probability),
                                band=r.band, cutoff=r.cutoff.date().isoformat())
                  for r in frame.itertuples()]
        scored = {s.customer_id for s in scores}
        unknown += [c for c in ids if c not in scored]
    return ScoreResponse(model_version=services.model_version, scores=scores, unknown=unknown)


@router.get("/customers/{customer_id}/explanation", response_model=Explanation,
            dependencies=[Depends(require("explain"))])
def explanation(customer_id: CustomerId, services: ServicesDep, session: SessionDep,
                lang: Annotated[str, Query(pattern="^(en|zh)$")] = "en") -> Explanation:
    """Reasons and actions from the assistant, every claim citing its evidence."""
    events = _customer_events(services, session, customer_id)
    helper = services.assistant
    with services.model_lock:
        if helper.store is not None:
            helper.store.index_events(events)
        return helper.explain(events, customer_id, lang=lang)


@router.post("/events", response_model=IngestResponse, dependencies=[Depends(require("ingest"))])
def ingest(body: IngestRequest, services: ServicesDep, session: SessionDep) -> IngestResponse:
    """Store new events, rescore their customers, and warn (webhook) on threshold crossings."""
    events = _events_frame(body.events, "events")
    stored = db.upsert_events(session, events)
    customers = list(dict.fromkeys(events["customer_id"].tolist()))
    with services.model_lock:
        rescored = services.rescore(session, customers)
    return IngestResponse(stored=stored, rescored=rescored)
