"""Routes that close the loop: record what was done to a customer, list it, and what worked.

Outcomes are never typed in: whether a customer was retained is derived from their events, with
the model's churn definition, when the effects are measured.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from finetune.actions import validate_actions
from finetune.contract import DataError
from service import db
from service.api.deps import ServicesDep, SessionDep, require
from service.api.problems import Problem
from service.api.schemas import CustomerId

router = APIRouter(prefix="/v1", tags=["actions"])


class ActionIn(BaseModel):
    action_id: str = Field(min_length=1, max_length=41,
                           description="a playbook action id, or 'holdout'")
    source: Literal["agent", "campaign", "random"] = Field(
        "agent", description="random: the action was the experiment's random assignment "
        "(an explored action or the holdout); agent/campaign: chosen by people")
    channel: str | None = Field(None, max_length=20)
    cost: float | None = Field(None, ge=0, le=1e9)
    ts: datetime | None = Field(None, description="when it was done (default: now)")


class ActionOut(BaseModel):
    action_ref: str
    customer_id: str
    ts: str
    action_id: str
    source: str
    channel: str | None = None
    cost: float | None = None
    agent: str | None = None


def _out(row: pd.Series) -> ActionOut:
    def value(name: str):
        v = row[name]
        return None if pd.isna(v) else v
    return ActionOut(action_ref=str(row["action_ref"]), customer_id=str(row["customer_id"]),
                     ts=pd.Timestamp(row["ts"]).isoformat(), action_id=str(row["action_id"]),
                     source=str(row["source"]), channel=value("channel"),
                     cost=value("cost"), agent=value("agent"))


def record_holdout(session, customer_id: str, period: str, as_of: pd.Timestamp) -> None:
    """The holdout is recorded when an agent is first told to leave the customer alone (the
    daily rescoring records every other held-out customer)."""
    db.add_holdouts(session, [customer_id], period, as_of)
    session.commit()


@router.post("/customers/{customer_id}/actions", response_model=ActionOut, status_code=201)
def record_action(customer_id: CustomerId, body: ActionIn, services: ServicesDep,
                  session: SessionDep,
                  key: Annotated[db.ApiKey, Depends(require("act"))]) -> ActionOut:
    """Record an action taken for a stored customer (the page's "done" button, or a CRM)."""
    if services.events(session, [customer_id]).empty:
        raise Problem(404, "Unknown customer", f"no events are stored for customer {customer_id!r}")
    when = pd.Timestamp(body.ts) if body.ts else pd.Timestamp.now(tz="UTC")
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    limit = services.clock.latest_allowed()
    if when > pd.Timestamp(limit):
        raise Problem(422, "Action from the future", f"ts {when.isoformat()} is after now "
                      f"({limit.isoformat()}); record actions once they are done", field="ts")
    frame = pd.DataFrame([{"customer_id": customer_id, "ts": when, "action_id": body.action_id,
                           "source": body.source, "channel": body.channel, "cost": body.cost,
                           "agent": key.name}])
    book = services.assistant_playbook()
    try:
        actions = validate_actions(frame, "action", row_offset=0, row_label="item",
                                   known_actions=set(book.actions))[0]
    except DataError as exc:
        raise Problem(422, "Invalid action", str(exc), field=exc.field) from exc
    db.upsert_actions(session, actions)
    return _out(actions.iloc[0])


@router.get("/customers/{customer_id}/actions", response_model=list[ActionOut],
            dependencies=[Depends(require("act"))])
def list_actions(customer_id: CustomerId, session: SessionDep) -> list[ActionOut]:
    """The actions recorded for a customer, newest first."""
    actions = db.load_actions(session, [customer_id]).sort_values("ts", ascending=False)
    return [_out(row) for _, row in actions.iterrows()]


@router.get("/actions/effects", dependencies=[Depends(require("admin"))])
def effects(services: ServicesDep) -> dict:
    """What worked: each action's uplift in retention against the randomised holdout (95%
    interval, cost per customer kept, n), chosen actions apart and marked not causal, the Qini
    coefficient of the learned policy on held-out customers and its rules."""
    with services.gate.bulk():
        return services.uplift_report()
