"""Routes the agents' chat page uses: find a customer, their timeline, and streamed chat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sse_starlette.sse import EventSourceResponse

from assistant.chat import Turn, chat
from finetune.pii import mask
from service import db, wiring
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem
from service.api.schemas import CustomerId

router = APIRouter(prefix="/v1", dependencies=[Depends(require("explain"))])


class CustomerHit(BaseModel):
    customer_id: str
    events: int
    probability: float | None = None
    band: str | None = None


class TimelineEvent(BaseModel):
    event_id: str
    ts: str
    event: str
    amount: float | None = None
    item: str | None = None
    rating: float | None = None
    text: str | None = None


class ChatTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class ChatRequest(BaseModel):
    messages: list[ChatTurn] = Field(min_length=1, max_length=24)
    lang: Literal["en", "zh"] = "en"


@router.get("/customers", response_model=list[CustomerHit])
def find_customers(session: SessionDep,
                   q: Annotated[str, Query(max_length=64)] = "",
                   limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[CustomerHit]:
    """Customers whose id starts with ``q``, with their latest score when there is one."""
    rows = session.execute(
        select(db.EventRow.customer_id, func.count()).where(
            db.EventRow.customer_id.startswith(q, autoescape=True))
        .group_by(db.EventRow.customer_id).order_by(db.EventRow.customer_id).limit(limit)).all()
    scores = {s.customer_id: s for s in session.scalars(select(db.ScoreRow).where(
        db.ScoreRow.customer_id.in_([r[0] for r in rows])))}
    return [CustomerHit(customer_id=cid, events=n,
                        probability=scores[cid].probability if cid in scores else None,
                        band=scores[cid].band if cid in scores else None) for cid, n in rows]


@router.get("/customers/{customer_id}/events", response_model=list[TimelineEvent])
def timeline(customer_id: CustomerId, services: ServicesDep, session: SessionDep,
             limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[TimelineEvent]:
    """The customer's events, newest first, customer text masked."""
    events = services.events(session, [customer_id])
    if events.empty:
        raise Problem(404, "Unknown customer", f"no events are stored for customer {customer_id!r}")
    events = events.sort_values("ts", ascending=False).head(limit)
    out = []
    for r in events.itertuples():
        out.append(TimelineEvent(
            event_id=f"event:{r.event_id}", ts=r.ts.isoformat(), event=str(r.event),
            amount=None if r.amount != r.amount else r.amount,
            item=r.item if isinstance(r.item, str) else None,
            rating=None if r.rating != r.rating else r.rating,
            text=mask(r.text) if isinstance(r.text, str) else None))
    return out


@router.post("/customers/{customer_id}/chat",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "server-sent events: token, retracted, done"}})
def chat_stream(customer_id: CustomerId, body: ChatRequest, services: ServicesDep,
                session: SessionDep) -> EventSourceResponse:
    """Grounded, multi-turn answers about one customer, streamed as server-sent events."""
    events = services.events(session, [customer_id])
    if events.empty:
        raise Problem(404, "Unknown customer", f"no events are stored for customer {customer_id!r}")
    if body.messages[-1].role != "user":
        raise Problem(422, "Invalid request", "messages: the last message must be the user's")
    helper = services.assistant
    wiring.check_llm(helper)  # a missing LLM is a 503 problem, not a broken stream
    turns = [Turn(m.role, m.content) for m in body.messages]
    as_of = services.as_of()

    def stream() -> Iterator[dict]:
        with services.gate.interactive():
            if helper.store is not None:
                helper.store.index_events(events)
            for item in chat(helper, events, customer_id, turns, body.lang, cutoff=as_of):
                yield {"event": item.kind, "data": json.dumps(item.data, ensure_ascii=False)}

    return EventSourceResponse(stream())
