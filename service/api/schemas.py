"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from finetune.contract import EVENT_TYPES

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EventIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    ts: datetime
    event: EventType
    amount: float | None = None
    quantity: float | None = None
    order_id: str | None = Field(None, max_length=64)
    item: str | None = Field(None, max_length=500)
    rating: float | None = Field(None, ge=1, le=5)
    text: str | None = Field(None, max_length=5000)
    event_id: str | None = Field(None, min_length=1, max_length=64)


class ScoreRequest(BaseModel):
    customer_ids: list[str] | None = Field(None, min_length=1, max_length=1000)
    events: list[EventIn] | None = Field(None, min_length=1, max_length=20000)
    cutoff: datetime | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ScoreRequest:
        if (self.customer_ids is None) == (self.events is None):
            raise ValueError("give exactly one of customer_ids (stored customers) or events "
                             "(inline histories)")
        return self


class CustomerScore(BaseModel):
    customer_id: str
    probability: float
    band: str
    as_of: str = Field(description="the date the score is as of: events before it were read")
    cutoff: str = Field(description="the same as as_of (kept for older clients)")


class ScoreResponse(BaseModel):
    model_version: str
    as_of: str
    scores: list[CustomerScore]
    unknown: list[str] = Field(default_factory=list, description=(
        "ids that were not scored: no stored events, or none before the cutoff"))


class Driver(BaseModel):
    """One thing that raises the risk, in plain words (related events grouped)."""

    evidence_id: str
    text: str
    contribution: float = Field(description="change in churn probability it accounts for")
    kind: str = Field("", description="recency, cancel, returns, tickets, rating, trend, ...")
    events: list[str] = Field(default_factory=list, description="the history events it groups")


class TrendPoint(BaseModel):
    as_of: str
    probability: float
    band: str
    model_version: str


class RiskResponse(CustomerScore):
    model_version: str
    previous: float | None = Field(None, description=(
        "the stored probability at the latest earlier as-of date"))
    trend: list[TrendPoint] = Field(default_factory=list, description=(
        "stored scores, oldest first (daily rescoring and ingestion)"))
    reasons: list[Driver]


class IngestRequest(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=20000)


class Rescored(BaseModel):
    customer_id: str
    as_of: str
    probability: float
    band: str
    previous: float | None = None
    model_version: str
    warning: str | None = Field(None, description="id of the warning this crossing raised")
    new_warning: bool | None = None


class IngestResponse(BaseModel):
    stored: int
    as_of: str
    rescored: list[Rescored]
