"""Checks an LLM draft must pass before an agent sees it.

Each check answers one way a draft can mislead: citing evidence that does not exist or belongs to
someone else, a number the evidence does not contain, an action outside the playbook or whose
conditions do not hold, links or contact details (what injected instructions usually ask for),
the wrong language, a claim about the risk contrary to the score ("low risk" at 72%), an offer no
playbook action makes ("a 90% discount", even when a review the customer wrote says 90), evidence
ids inside the prose, and leaving out what matters: every top driver must be cited by a reason.
Problems are plain sentences, so they can be fed back for one retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from assistant.playbook import Playbook
from assistant.schema import Draft, Evidence, Explanation
from finetune.pii import EMAIL, PHONE_MASK, mask

NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|io|cn|ru|xyz)\b")
CJK = re.compile(r"[\u4e00-\u9fff]")
SENTENCE_END = re.compile(r"[.!?。！？][\"'”’」』)）]*\s*$")
MAX_TEXT = 300
MAX_SENTENCES = 2
COVERAGE = "no reason mentions the driver"  # how a coverage problem starts (generate.prune)
EVIDENCE_ID = re.compile(r"\b(?:fact|event|score|doc|ticket|review):[\w.-]+")
QUOTED = re.compile(r"[\"“「『][^\"”」』]*[\"”」』]")
SENTENCE_BREAK = re.compile(r"[.!?。！？](?=\s+\S|[^\s.!?。！？\"'”’」』)）\d])")
# A stated band or direction of the risk, and the band it claims (checked against the score).
BAND_CLAIMS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(?i)\b(?:not|no longer|isn't)\s+(?:at\s+)?(?:a\s+)?high[- ]risk"), "not high"),
    (re.compile(r"(?i)\b(?:not|no longer|isn't)\s+(?:at\s+)?risk"), "low"),
    (re.compile(r"(?i)\b(?:unlikely|not likely)\s+to\s+(?:churn|leave|stop)"), "low"),
    (re.compile(r"(?i)\b(?:low|lower|minimal|little)[- ](?:churn[- ])?risk"), "low"),
    (re.compile(r"(?i)\brisk\s+(?:is\s+)?(?:low|minimal)\b"), "low"),
    (re.compile(r"(?i)\b(?:medium|moderate)[- ](?:churn[- ])?risk"), "medium"),
    (re.compile(r"(?i)\b(?:high|higher|elevated|severe|serious)[- ](?:churn[- ])?risk"), "high"),
    (re.compile(r"(?i)\brisk\s+(?:is\s+)?(?:high|elevated)\b"), "high"),
    (re.compile(r"(?i)(?<!un)(?<!not )\blikely\s+to\s+(?:churn|leave|stop buying)"), "up"),
    (re.compile(r"不(?:太)?(?:可能|会)流失|风险(?:较|很|极)?低|低风险"), "low"),
    (re.compile(r"中(?:等)?风险|风险中等"), "medium"),
    (re.compile(r"(?<!不)(?<!不太)(?:很|极)?可能流失|风险(?:较|很|极)?高|高风险"), "up"),
)
# Offers: a figure next to an offer word ("90% discount", "refund 500", "打9折"); the figure must
# be one a playbook action states. A percentage that is not an offer ("spend fell 40%") is the
# number check's business, not this one's.
_OFFER_WORD = r"(?:off|discount|coupon|voucher|refund|cashback|credit|rebate)"
_FIGURE = r"(\d[\d,]*(?:\.\d+)?)"
OFFER = re.compile(
    rf"(?i){_FIGURE}\s*(?:%|percent|per cent)?\s*{_OFFER_WORD}\b"
    rf"|(?i:\b{_OFFER_WORD}s?)\s+(?:of\s+)?(?:up to\s+)?[$€£¥]?{_FIGURE}"
    rf"|打\s*{_FIGURE}\s*折|{_FIGURE}\s*%?\s*的?(?:折扣|优惠|返现|退款)"
    rf"|(?:折扣|优惠券?|返现|退款)[^\d。，,.]{{0,6}}{_FIGURE}")


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


def unquoted(text: str) -> str:
    """The writer's own words: what the customer said, quoted, is not a claim."""
    return QUOTED.sub(" ", text)


def risk_claim_problem(text: str, band: str, where: str) -> str | None:
    """A band or direction stated against the score: 'low risk' at a high score, 'likely to
    leave' at a low one, 'medium risk' when it is not medium. Patterns are tried in order and a
    matched phrase is blanked, so "not at high risk" is one claim (low), not two."""
    own = unquoted(text)
    for pattern, claim in BAND_CLAIMS:
        for hit in pattern.finditer(own):
            wrong = ((claim == "up" and band == "low") or (claim == "not high" and band == "high")
                     or (claim in ("low", "medium", "high") and claim != band))
            if wrong:
                return (f"{where} says {hit.group(0)!r}, but the churn risk is {band}; do not "
                        "describe the risk against the score")
        own = pattern.sub(lambda m: " " * len(m.group(0)), own)
    return None


def offer_problem(text: str, allowed: set[float], where: str) -> str | None:
    """An offer whose figure no playbook action states is a promise nobody made."""
    for m in OFFER.finditer(unquoted(text)):
        raw = next(g for g in m.groups() if g is not None)
        value = round(float(raw.replace(",", "")), 2)
        if value not in allowed:
            return (f"{where} offers {m.group(0).strip()!r}, which no playbook action offers; "
                    "suggest only the playbook's actions")
    return None


def playbook_numbers(playbook: Playbook, lang: str) -> set[float]:
    return set().union(*(numbers(a.text(lang)) for a in playbook.actions.values()))


def prose_problem(text: str, where: str) -> str | None:
    """Evidence ids belong in the citations, not the sentence; a reason is short."""
    if EVIDENCE_ID.search(unquoted(text)):
        return f"{where} shows an evidence id in its text; cite ids only in \"evidence\""
    if len(SENTENCE_BREAK.findall(unquoted(text).strip())) >= MAX_SENTENCES:
        return f"{where} has more than {MAX_SENTENCES} sentences; write one or two short ones"
    return None


def coverage_problems(draft: Draft, required: Mapping[str, str]) -> list[str]:
    """Each required driver (evidence id -> its plain words) must be said by a reason: cited,
    and, when its words carry figures, with at least one of them. A reason that cites four ids
    and says "due to their recency, orders and rating" names a factor; it does not say it."""
    problems = []
    for sid, text in required.items():
        citing = [r for r in draft.reasons if sid in r.evidence]
        figures = numbers(text)
        if not any(not figures or numbers(r.text) & figures for r in citing):
            problems.append(f"{COVERAGE} {sid!r} ({text}); add a reason that says it, "
                            "with its figures, citing it")
    return problems


def _contact_problem(text: str, where: str) -> str | None:
    if URL.search(text):
        return f"{where} contains a link; links are not allowed"
    if EMAIL.search(text) or mask(text) != text or PHONE_MASK in text:
        return f"{where} contains contact details; they are not allowed"
    return None


def check_draft(draft: Draft, evidence: Mapping[str, Evidence], customer_id: str,
                playbook: Playbook, facts: Mapping[str, float], lang: str,
                candidates: set[str] | None = None, required: Mapping[str, str] | None = None,
                band: str | None = None) -> list[str]:
    """All problems with a draft; an empty list means it may be shown. ``required``: the top
    drivers a reason must cite (evidence id -> words); ``band``: the score's band."""
    problems: list[str] = []
    if not draft.reasons:
        problems.append("there are no reasons")
    offers = playbook_numbers(playbook, lang)
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
        if cited and all(e.kind == "score" for e in cited):
            problems.append(f"{where} only restates the score; say what drives it, citing "
                            "that evidence")
        allowed = set().union(*(numbers(e.text) for e in cited)) if cited else set()
        invented = sorted(numbers(reason.text) - allowed)
        if invented:
            shown = ", ".join(f"{x:g}" for x in invented)
            problems.append(f"{where} has number(s) {shown} that are not in its cited evidence")
        if len(reason.text) > MAX_TEXT:
            problems.append(f"{where} is longer than {MAX_TEXT} characters")
        if not SENTENCE_END.search(reason.text):
            problems.append(f"{where} stops mid-sentence; write shorter, complete sentences")
        for p in (_language_problem(reason.text, lang, where), _contact_problem(reason.text, where),
                  prose_problem(reason.text, where), offer_problem(reason.text, offers, where),
                  risk_claim_problem(reason.text, band, where) if band else None):
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
        for p in (_language_problem(action.why, lang, where), _contact_problem(action.why, where),
                  prose_problem(action.why, where), offer_problem(action.why, offers, where),
                  risk_claim_problem(action.why, band, where) if band else None):
            if p:
                problems.append(p)
    if required:
        problems += coverage_problems(draft, required)
    return problems


def check_explanation(x: Explanation, playbook: Playbook, facts: Mapping[str, float]
                      ) -> list[str]:
    """The same checks on a finished explanation (what was actually shown)."""
    draft = Draft.model_validate({
        "reasons": [r.model_dump() for r in x.reasons],
        "actions": [{"id": a.playbook_id, "why": a.why} for a in x.actions]})
    by_id = {e.id: e for e in x.evidence}
    required = {sid: by_id[sid].text if sid in by_id else sid for sid in x.coverage}
    return check_draft(draft, by_id, x.customer_id, playbook, facts, x.language,
                       required=required, band=x.risk.band)
