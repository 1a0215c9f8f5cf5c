"""Routes under /v1: risk, batch scoring, explanations and event ingestion.

Every answer is as of the service's one date (``service.clock``), the same for every customer
and equal to what offline ``retention score --cutoff AS_OF`` gives; responses carry ``as_of``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, Query
from sse_starlette.sse import EventSourceResponse

from assistant import wording
from assistant.attributions import attribute
from assistant.drivers import group, top
from assistant.explain import Context
from assistant.llm import LLMUnavailable
from assistant.schema import Explanation
from finetune.actions import HOLDOUT
from finetune.contract import validate_events
from finetune.labels import as_cutoff
from service import db, scores, wiring
from service.api.actions import record_holdout
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem
from service.api.schemas import (
    CustomerId,
    CustomerScore,
    Driver,
    IngestRequest,
    IngestResponse,
    RiskResponse,
    ScoreRequest,
    ScoreResponse,
    TrendPoint,
)
from service.clock import EARLIEST, ancient_rows, future_rows

router = APIRouter(prefix="/v1")


def _events_frame(rows: list, source: str, services: ServicesDep) -> pd.DataFrame:
    """Validated events; refused when one is dated in the future (it would move dates) or
    when they name more customers than one request may."""
    frame = pd.DataFrame([r.model_dump() for r in rows])
    early = ancient_rows([r.ts for r in rows])
    if early:
        raise Problem(422, "Events too old", f"{source}: item(s) {', '.join(map(str, early[:10]))} "
                      f"are dated before {EARLIEST.date()}; check the time zone and the year",
                      field="ts", rows=early[:20])
    events = validate_events(frame, source, row_offset=0, row_label="item")[0]
    limit = services.clock.latest_allowed()
    late = future_rows(frame["ts"], limit)
    if late:
        raise Problem(422, "Events from the future",
                      f"{source}: item(s) {', '.join(map(str, late[:10]))} are dated after now "
                      f"({limit.isoformat()}, clock skew allowed); send events once they happened",
                      field="ts", rows=late[:20])
    _check_batch(services, events["customer_id"].nunique(), source)
    return events


def _check_event_owners(session: SessionDep, events: pd.DataFrame) -> None:
    """An event id already stored for another customer is refused: replacing it would move
    the event between customers without rescoring the one who lost it."""
    owners = db.event_owners(session, events["event_id"].astype(str).tolist())
    moved = [(e, owners[e], c) for e, c in zip(events["event_id"].astype(str),
                                                events["customer_id"].astype(str))
             if e in owners and owners[e] != c]
    if moved:
        e, old, new = moved[0]
        raise Problem(422, "Event id belongs to another customer",
                      f"events: event_id {e!r} is stored for customer {old!r}, not {new!r} "
                      f"({len(moved)} such event(s)); give the event a new id",
                      field="event_id", event_ids=[m[0] for m in moved[:20]])


def _check_batch(services: ServicesDep, n: int, source: str) -> None:
    if n > services.settings.max_batch:
        raise Problem(422, "Batch too large", f"{source}: {n:,} customers in one request; the "
                      f"limit is {services.settings.max_batch:,} (RETENTION_MAX_BATCH): split it",
                      field=source)


def _customer_events(services: ServicesDep, session: SessionDep, cid: str) -> pd.DataFrame:
    events = services.events(session, [cid])
    if events.empty:
        raise Problem(404, "Unknown customer", f"no events are stored for customer {cid!r}")
    return events


@router.get("/customers/{customer_id}/risk", response_model=RiskResponse,
            dependencies=[Depends(require("score"))])
def risk(customer_id: CustomerId, services: ServicesDep, session: SessionDep) -> RiskResponse:
    """The churn risk of one stored customer at the as-of date, with the events that drive it
    and the trend of their earlier scores (no LLM)."""
    events = _customer_events(services, session, customer_id)
    as_of = services.as_of()
    scorer = services.scorer
    with services.gate.interactive():
        scored = scorer.customer(events, customer_id, as_of)
        drivers = top(group(scored, attribute(scorer, scored)))
    day = as_of.date().isoformat()
    return RiskResponse(customer_id=customer_id, probability=scored.probability,
                        band=scored.band, cutoff=day, as_of=day,
                        model_version=scorer.model.directory.name,
                        previous=scores.previous_scores(session, [customer_id], day).get(customer_id),
                        trend=[TrendPoint(**t) for t in scores.trend(session, customer_id)],
                        reasons=[Driver(evidence_id=d.sid, text=wording.reason_text(d, "en"),
                                        contribution=d.contribution, kind=d.key,
                                        events=d.events) for d in drivers])


@router.post("/score", response_model=ScoreResponse)
def score(body: ScoreRequest, services: ServicesDep, session: SessionDep,
          key: Annotated[db.ApiKey, Depends(require("score"))]) -> ScoreResponse:
    """Score many customers at the as-of date (or ``cutoff``, one date for the whole request):
    stored ones by id, or anyone from inline events. A customer's score never depends on who
    else is in the request; big requests are scored in chunks, so agents are not kept waiting."""
    if body.events is not None:
        events = _events_frame(body.events, "events", services)
        ids = list(dict.fromkeys(events["customer_id"].tolist()))
        unknown: list[str] = []
    else:
        ids = list(dict.fromkeys(body.customer_ids or []))
        _check_batch(services, len(ids), "customer_ids")
        events = services.events(session, ids)
        known = set(events["customer_id"])
        unknown = [c for c in ids if c not in known]
        ids = [c for c in ids if c in known]
        # Stored customers' data is read: each one goes to the access log.
        db.record_access(session, key, "POST", "/v1/score", list(ids))
    as_of = as_cutoff(pd.Timestamp(body.cutoff)) if body.cutoff else services.as_of()
    scorer = services.scorer
    frame = services.score(scorer, events, ids, as_of)
    out = [CustomerScore(customer_id=r.customer_id, probability=float(r.probability),
                         band=r.band, cutoff=r.cutoff.date().isoformat(),
                         as_of=r.cutoff.date().isoformat()) for r in frame.itertuples()]
    scored = {s.customer_id for s in out}
    unknown += [c for c in ids if c not in scored]
    return ScoreResponse(model_version=scorer.model.directory.name,
                         as_of=as_of.date().isoformat(), scores=out, unknown=unknown)


def _prepared(services: ServicesDep, session: SessionDep, customer_id: str, lang: str
              ) -> tuple[Explanation | None, Context | None, str | None]:
    """A cached explanation, or the prepared context (score, drivers, evidence, actions)
    and its cache key; the model pass runs under the interactive gate, the LLM does not."""
    events = _customer_events(services, session, customer_id)
    helper = services.assistant
    as_of = services.as_of()
    key = helper.cache_key(events, customer_id, lang, as_of)
    hit = helper.cached(key)
    if hit is not None:
        arm = hit.experiment
    else:
        with services.gate.interactive():
            if helper.store is not None:
                helper.store.index_events(events)
            ctx = helper.prepare(events, customer_id, lang=lang, cutoff=as_of)
        arm = ctx.assignment
    if arm is not None and arm.arm == HOLDOUT:
        record_holdout(session, customer_id, arm.period, as_of)
    if hit is not None:
        return hit, None, None
    return None, ctx, key


Lang = Annotated[str, Query(pattern="^(en|zh)$")]


@router.get("/customers/{customer_id}/explanation", response_model=Explanation,
            dependencies=[Depends(require("explain"))])
def explanation(customer_id: CustomerId, services: ServicesDep, session: SessionDep,
                lang: Lang = "en") -> Explanation:
    """Reasons and actions from the assistant, every claim citing its evidence (the LLM's
    checked wording when a backend is configured; cached by snapshot)."""
    hit, ctx, key = _prepared(services, session, customer_id, lang)
    if hit is not None:
        return hit
    helper = services.assistant
    result = helper.write(ctx)  # type: ignore[arg-type]
    helper.remember(key, result)
    return result


@router.get("/customers/{customer_id}/explanation/stream",
            dependencies=[Depends(require("explain"))],
            responses={200: {"content": {"text/event-stream": {}}, "description": (
                "server-sent events: `deterministic` (risk, drivers and actions without an "
                "LLM, at once), then `final` (the LLM's wording, checked) or `kept` (the LLM's "
                "drafts failed their checks or it is unavailable: the deterministic wording "
                "stays), then `done`; a cached explanation comes as `final` alone")}})
def explanation_stream(customer_id: CustomerId, services: ServicesDep, session: SessionDep,
                       lang: Lang = "en") -> EventSourceResponse:
    """What an agent sees first never waits for the LLM."""
    hit, ctx, key = _prepared(services, session, customer_id, lang)
    helper = services.assistant

    def frame(kind: str, x: Explanation | None, **extra: object) -> dict:
        body = {"explanation": x.model_dump(mode="json") if x is not None else None, **extra}
        return {"event": kind, "data": json.dumps(body, ensure_ascii=False)}

    def stream() -> Iterator[dict]:
        if hit is not None:
            yield frame("final", hit, cached=True)
            yield {"event": "done", "data": "{}"}
            return
        assert ctx is not None
        first = helper.deterministic(ctx)
        yield frame("deterministic", first, cached=False)
        if helper.llm is None:
            helper.remember(key, first)
            yield frame("final", first, cached=False)
        else:
            try:
                wiring.check_llm(helper)
                result = helper.write(ctx)
            except LLMUnavailable as exc:
                yield frame("kept", None, reason=f"the LLM is unavailable: {exc}")
            else:
                helper.remember(key, result)
                if result.fallback:
                    yield frame("kept", result, reason=result.fallback_reason or "")
                else:
                    yield frame("final", result, cached=False)
        yield {"event": "done", "data": "{}"}

    return EventSourceResponse(stream())


@router.post("/events", response_model=IngestResponse, dependencies=[Depends(require("ingest"))])
def ingest(body: IngestRequest, services: ServicesDep, session: SessionDep) -> IngestResponse:
    """Store new events and rescore their customers at the as-of date; an upward crossing of
    the risk threshold adds a warning to the outbox (delivered afterwards, with retries)."""
    events = _events_frame(body.events, "events", services)
    _check_event_owners(session, events)
    stored = db.upsert_events(session, events)
    customers = list(dict.fromkeys(events["customer_id"].tolist()))
    rescored = services.rescore(session, customers)
    return IngestResponse(stored=stored, as_of=services.as_of().date().isoformat(),
                          rescored=rescored)
