"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from finetune.contract import EVENT_TYPES

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
# An id is kept exactly as sent, so the API refuses what the file loaders would silently
# change or drop: blanks, surrounding spaces, "nan"/"None", float text ("99999.0" would become
# "99999"), a "/" (the id could be stored but never fetched by URL) and control characters.
ID_PATTERN = r"^[^\s/\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]*[^\s/\x00-\x1f\x7f])?$"
NOT_IDS = {"nan", "none", "null", "<na>", "nat"}


def _id(value: str) -> str:
    import re

    if value.lower() in NOT_IDS:
        raise ValueError(f"{value!r} reads as a missing value, not an id")
    if re.fullmatch(r"-?\d+\.0+", value):
        raise ValueError(f"{value!r} looks like a number printed as a float; send "
                         f"{value.split('.')[0]!r} if that is the id")
    return value


Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                          description="kept exactly: no surrounding spaces, '/', control "
                          "characters, 'nan'/'None' or float text such as '123.0'"),
               AfterValidator(_id)]
CustomerId = Annotated[str, Path(min_length=1, max_length=64, description="a stored customer")]
Number = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]


class EventIn(BaseModel):
    customer_id: Id
    ts: datetime = Field(description="when it happened; not before 1970-01-01 and not after "
                         "now (a few minutes of clock skew allowed): refused with 422")
    event: EventType
    amount: Number | None = None
    quantity: Number | None = None
    order_id: str | None = Field(None, max_length=64)
    item: str | None = Field(None, max_length=500)
    rating: float | None = Field(None, ge=1, le=5)
    text: str | None = Field(None, max_length=5000)
    event_id: Id | None = None


class ScoreRequest(BaseModel):
    """Exactly one of ``customer_ids`` (stored customers) or ``events`` (inline histories);
    the spec says so too (``oneOf``), so clients and fuzzers know it."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["customer_ids"], "not": {"required": ["events"]}},
        {"required": ["events"], "not": {"required": ["customer_ids"]}}]})

    customer_ids: list[Id] = Field(None, min_length=1, max_length=1000)  # type: ignore[assignment]
    events: list[EventIn] = Field(None, min_length=1, max_length=20000)  # type: ignore[assignment]
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
