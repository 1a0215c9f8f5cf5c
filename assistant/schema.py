"""Typed objects the assistant hands out: evidence, risk, reasons, actions, the explanation.

The API, the chat page and the reports all serialise these, so what an agent reads and what a CRM
imports cannot drift apart.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Band = Literal["low", "medium", "high"]
Language = Literal["en", "zh"]


class Evidence(BaseModel):
    """One thing a claim may rest on: a header fact, an event, or a retrieved document."""

    id: str  # "fact:recency", "event:<event_id>"
    customer_id: str
    kind: str  # "fact" or an event type
    text: str  # masked: no emails or phone numbers
    days_ago: int | None = None
    contribution: float | None = None  # change in churn probability it accounts for
    events: list[str] = Field(default_factory=list, description=(
        "the history events this item stands for (a driver groups several): the page "
        "highlights them"))


class Risk(BaseModel):
    probability: float = Field(ge=0.0, le=1.0)
    band: Band
    cutoff: str  # the as-of date of the snapshot scored (ISO)


class Reason(BaseModel):
    text: str
    evidence: list[str] = Field(min_length=1)


class Measurement(BaseModel):
    """An action's effect measured against the randomised holdout, in percentage points of
    customers retained. The page words it in the agent's language from these fields;
    ``SuggestedAction.evidence`` keeps the English line for logs and older clients."""

    uplift_points: float
    ci_low_points: float
    ci_high_points: float
    n: int = Field(ge=0)  # customers who got the action
    # the learned policy's expected uplift for customers like this one, when it chose the action
    expected_points: float | None = None


class SuggestedAction(BaseModel):
    playbook_id: str
    text: str
    why: str
    channel: str = ""
    cost: str = ""
    measured: bool = False  # ranked by its measured effect (else by the playbook's priority)
    evidence: str = "no measurement yet"  # "measured: +4.1 points retained, 95% CI ..., n=..."
    measurement: Measurement | None = None  # the same, as numbers (None: not measured yet)
    explored: bool = False  # drawn at random for the experiment (record it as source=random)


class ExperimentArm(BaseModel):
    arm: str  # holdout, explore, normal, not_at_risk, off
    period: str
    why: str


class Explanation(BaseModel):
    customer_id: str
    risk: Risk
    reasons: list[Reason]
    actions: list[SuggestedAction]
    evidence: list[Evidence]
    language: Language
    backend: str  # which backend wrote the words: local, small, openai, none
    fallback: bool = False  # True when the deterministic wording replaced the LLM's
    fallback_reason: str | None = None
    attempts: int = 1
    dropped: list[str] = Field(default_factory=list, description=(
        "checks that removed individual LLM reasons or actions; what is shown passed them all"))
    experiment: ExperimentArm | None = None  # holdout: no actions, and the agent is told why
    coverage: list[str] = Field(default_factory=list, description=(
        "evidence ids of the top drivers the reasons must mention; all are cited"))
    added: list[str] = Field(default_factory=list, description=(
        "drivers whose deterministic reason was added because the LLM's draft left them out"))


# What the LLM is asked to return (JSON-schema constrained on the local backend).
# Length limits are part of the JSON schema, so constrained decoding cannot ramble past them
# (an unbounded draft ran out of tokens mid-JSON in the first Online Retail run).
MAX_CITED = 4


class DraftReason(BaseModel):
    text: str = Field(max_length=240, description="one short sentence for a support agent")
    evidence: list[str] = Field(max_length=MAX_CITED,
                                description="ids of the evidence items this sentence rests on")


class DraftAction(BaseModel):
    id: str = Field(max_length=40, description="a playbook action id from the candidate list")
    why: str = Field(max_length=200, description="one short sentence: why it fits this customer")


class Draft(BaseModel):
    # Bounded so a draft always fits the output budget (llama.cpp's grammar enforces these).
    reasons: list[DraftReason] = Field(max_length=3)
    actions: list[DraftAction] = Field(max_length=2)


def draft_schema(evidence_ids: list[str], action_ids: list[str]) -> dict:
    """Draft's JSON schema with the ids a draft may cite spelled out, for constrained decoding.

    With ``evidence_ids`` as an enum a grammar-constrained model cannot cite an id that does not
    exist: in session 31, 3 of 8 Chinese drafts lost a reason for citing "effect:raises the
    risk" (the evidence line's effect word shaped like an id). The checks still run on every
    draft, because a backend that only asks for JSON (``json_object``) enforces none of this.
    An empty list leaves that field free (an empty enum would admit no draft at all).
    """
    schema = Draft.model_json_schema()
    reason = schema["$defs"]["DraftReason"]["properties"]
    if evidence_ids:
        reason["evidence"]["items"] = {"enum": list(dict.fromkeys(evidence_ids))}
        reason["evidence"]["minItems"] = 1
    if action_ids:
        schema["$defs"]["DraftAction"]["properties"]["id"] = {
            "enum": list(dict.fromkeys(action_ids)),
            "description": "a playbook action id from the candidate list"}
    return schema
