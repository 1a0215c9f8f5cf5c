"""Checks an LLM draft must pass before an agent sees it.

Each check answers one way a draft can mislead: citing evidence that does not exist or belongs to
someone else, a number the evidence does not contain, an action outside the playbook or whose
conditions do not hold, links or contact details (what injected instructions usually ask for),
or the wrong language. Problems are plain sentences, so they can be fed back for one retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from assistant.pii import EMAIL, PHONE_MASK, mask
from assistant.playbook import Playbook
from assistant.schema import Draft, Evidence, Explanation

NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|io|cn|ru|xyz)\b")
CJK = re.compile(r"[\u4e00-\u9fff]")
SENTENCE_END = re.compile(r"[.!?。！？][\"'”’」』)）]*\s*$")
MAX_TEXT = 300


def numbers(text: str) -> set[float]:
    """Numbers as values: '1,234.50' and '1234.5' are the same claim."""
    out = set()
    for raw in NUMBER.findall(text):
        try:
            out.add(round(float(raw.replace(",", "")), 2))
        except ValueError:
            continue
    return out


def _language_problem(text: str, lang: str, where: str) -> str | None:
    unquoted = re.sub(r"[\"“「『].*?[\"”」』]", "", text)
    has_cjk = bool(CJK.search(unquoted))
    if lang == "zh" and not has_cjk:
        return f"{where} is not written in Chinese"
    if lang == "en" and has_cjk:
        return f"{where} is not written in English (quote Chinese words in quotation marks)"
    return None


def _contact_problem(text: str, where: str) -> str | None:
    if URL.search(text):
        return f"{where} contains a link; links are not allowed"
    if EMAIL.search(text) or mask(text) != text or PHONE_MASK in text:
        return f"{where} contains contact details; they are not allowed"
    return None


def check_draft(draft: Draft, evidence: Mapping[str, Evidence], customer_id: str,
                playbook: Playbook, facts: Mapping[str, float], lang: str,
                candidates: set[str] | None = None) -> list[str]:
    """All problems with a draft; an empty list means it may be shown."""
    problems: list[str] = []
    if not draft.reasons:
        problems.append("there are no reasons")
    own_numbers = set().union(*(numbers(e.text) for e in evidence.values()
                                if e.customer_id == customer_id)) if evidence else set()
    for i, reason in enumerate(draft.reasons, 1):
        where = f"reason {i}"
        if not reason.evidence:
            problems.append(f"{where} cites no evidence")
        cited: list[Evidence] = []
        for eid in reason.evidence:
            item = evidence.get(eid)
            if item is None:
                problems.append(f"{where} cites evidence id {eid!r}, which does not exist")
            elif item.customer_id != customer_id:
                problems.append(f"{where} cites evidence {eid!r} of another customer")
            else:
                cited.append(item)
        allowed = set().union(*(numbers(e.text) for e in cited)) if cited else set()
        invented = sorted(numbers(reason.text) - allowed)
        if invented:
            shown = ", ".join(f"{x:g}" for x in invented)
            problems.append(f"{where} has number(s) {shown} that are not in its cited evidence")
        if len(reason.text) > MAX_TEXT:
            problems.append(f"{where} is longer than {MAX_TEXT} characters")
        if not SENTENCE_END.search(reason.text):
            problems.append(f"{where} stops mid-sentence; write shorter, complete sentences")
        for p in (_language_problem(reason.text, lang, where), _contact_problem(reason.text, where)):
            if p:
                problems.append(p)
    seen: set[str] = set()
    for i, action in enumerate(draft.actions, 1):
        where = f"action {i}"
        if action.id not in playbook:
            problems.append(f"{where} {action.id!r} is not in the playbook")
            continue
        if action.id in seen:
            problems.append(f"{where} {action.id!r} is suggested twice")
        seen.add(action.id)
        entry = playbook[action.id]
        if not entry.fits(facts):
            problems.append(f"{where} {action.id!r} does not apply: it needs "
                            f"{entry.when.describe()}")
        elif candidates is not None and action.id not in candidates:
            problems.append(f"{where} {action.id!r} was not among the candidate actions")
        if not SENTENCE_END.search(action.why):
            problems.append(f"{where} stops mid-sentence; write a shorter, complete sentence")
        invented = sorted(numbers(action.why) - own_numbers - numbers(entry.text(lang)))
        if invented:
            problems.append(f"{where} has number(s) {', '.join(f'{x:g}' for x in invented)} "
                            "that are not in the evidence")
        for p in (_language_problem(action.why, lang, where), _contact_problem(action.why, where)):
            if p:
                problems.append(p)
    return problems


def check_explanation(x: Explanation, playbook: Playbook, facts: Mapping[str, float]
                      ) -> list[str]:
    """The same checks on a finished explanation (what was actually shown)."""
    draft = Draft.model_validate({
        "reasons": [r.model_dump() for r in x.reasons],
        "actions": [{"id": a.playbook_id, "why": a.why} for a in x.actions]})
    return check_draft(draft, {e.id: e for e in x.evidence}, x.customer_id, playbook, facts,
                       x.language)
