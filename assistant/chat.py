"""Multi-turn questions about one customer, answered from their evidence and streamed.

The answer streams token by token (agents see it at once) and is checked when complete: numbers
must appear in the customer's evidence, cited ids must be theirs, no links or contact details,
no claim about the risk against the score and no offer a playbook action does not make.
An answer that fails is retracted and replaced by the evidence itself, and the stream says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from assistant.checks import URL, numbers, offer_problem, playbook_numbers, risk_claim_problem
from assistant.explain import Assistant
from assistant.generate import evidence_line, template
from assistant.schema import Evidence
from finetune.pii import EMAIL, PHONE_MASK, mask

CITATION = re.compile(r"\[((?:fact|event|score):[^\]\s]+)\]")
MAX_TURNS = 12


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass
class ChatEvent:
    kind: str  # "token", "retracted", "done"
    data: dict


def check_answer(text: str, evidence: dict[str, Evidence], customer_id: str,
                 band: str | None = None, offers: set[float] | None = None) -> list[str]:
    """``band``: the score's band, which a claim about the risk must not contradict;
    ``offers``: the figures playbook actions state, the only ones an offer may carry."""
    problems = []
    allowed = set().union(*(numbers(e.text) for e in evidence.values())) if evidence else set()
    allowed |= offers or set()  # a drafted message may state what a playbook action offers
    invented = sorted(numbers(text) - allowed)
    if invented:
        problems.append("numbers not in the evidence: " + ", ".join(f"{x:g}" for x in invented))
    for eid in CITATION.findall(text):
        item = evidence.get(eid)
        if item is None or item.customer_id != customer_id:
            problems.append(f"cites {eid}, which is not this customer's evidence")
    if URL.search(text) or EMAIL.search(text) or PHONE_MASK in text or mask(text) != text:
        problems.append("contains a link or contact details")
    for p in (risk_claim_problem(text, band, "the answer") if band else None,
              offer_problem(text, offers, "the answer") if offers is not None else None):
        if p:
            problems.append(p)
    return problems


def fallback_answer(question: str, evidence: list[Evidence], lang: str) -> str:
    """No LLM, or a failed answer: the most relevant evidence, quoted with its ids."""
    words = {w for w in re.findall(r"\w+", question.lower()) if len(w) > 3}
    ranked = sorted(evidence, key=lambda e: -len(words & set(re.findall(r"\w+",
                                                                       e.text.lower()))))
    head = "What the records show:" if lang == "en" else "记录显示："
    return head + "\n" + "\n".join(f"- {e.text} [{e.id}]" for e in ranked[:5])


def chat(helper: Assistant, events: pd.DataFrame, customer_id: str, turns: list[Turn],
         lang: str = "en", cutoff: pd.Timestamp | str | None = None) -> Iterator[ChatEvent]:
    """Answers about the customer as of ``cutoff`` (the service's as-of date)."""
    if not turns or turns[-1].role != "user":
        raise ValueError("the conversation must end with a user message")
    turns = turns[-MAX_TURNS:]
    scored = helper.scorer.customer(events, customer_id, cutoff)
    drivers = helper.drivers(scored)
    evidence = helper.evidence(scored, drivers, lang)
    if helper.store is not None:
        seen = {e.id for e in evidence}
        for doc in helper.store.search(customer_id, turns[-1].content, k=4, before=scored.cutoff):
            if doc.id not in seen:
                evidence.append(Evidence(id=doc.id, customer_id=customer_id, kind=doc.kind,
                                         text=mask(doc.text)))
    by_id = {e.id: e for e in evidence}
    if helper.llm is None:
        answer = fallback_answer(turns[-1].content, evidence, lang)
        yield ChatEvent("token", {"text": answer})
        yield ChatEvent("done", {"text": answer, "backend": "none", "checked": True})
        return
    actions = ", ".join(a.id for a in helper.candidates(scored, drivers))
    # The id is data like the evidence: quoted as a JSON string, so no newline or instruction
    # inside it can become a line of the prompt.
    system = template(f"chat.system.{lang}.jinja").render(
        customer_id=json.dumps(customer_id, ensure_ascii=False), percent=round(100 * scored.probability), band=scored.band,
        actions=actions or "none", evidence=[evidence_line(e) for e in evidence])
    history: list[BaseMessage] = [SystemMessage(system)]
    for t in turns:
        history.append(HumanMessage(mask(t.content)) if t.role == "user" else AIMessage(t.content))
    parts = []
    for chunk in helper.llm.stream(history):
        text = chunk.content if isinstance(chunk.content, str) else ""
        if text:
            parts.append(text)
            yield ChatEvent("token", {"text": text})
    answer = "".join(parts)
    problems = check_answer(answer, by_id, customer_id, scored.band,
                            playbook_numbers(helper.playbook, lang))
    if problems:
        answer = fallback_answer(turns[-1].content, evidence, lang)
        yield ChatEvent("retracted", {"problems": problems, "text": answer})
    yield ChatEvent("done", {"text": answer, "backend": helper.backend, "checked": not problems,
                             "problems": problems})
