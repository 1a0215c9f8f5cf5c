"""Checks an LLM draft must pass before an agent sees it.

Each check answers one way a draft can mislead: citing evidence that does not exist or belongs to
someone else, a number the evidence does not contain, an action outside the playbook or whose
conditions do not hold, links or contact details (what injected instructions usually ask for),
the wrong language, a claim about the risk contrary to the score ("low risk" at 72%), an offer no
playbook action makes ("a 90% discount", even when a review the customer wrote says 90), evidence
ids inside the prose, a driver said to lower the risk when the model counts it as raising it, a
figure said of the wrong thing ("no visit for 88 days" when 88 counts the days since the last
order) or in the wrong unit (a count said as days), saying something did not happen when the
evidence counts it, a guessed cause or feeling said as a reason, and leaving out what matters:
every top driver must be cited by a reason. Problems read as plain English sentences and are
worded in the draft's language for its one retry (``Problem``, ``prompts/problems.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, Self

import yaml

from assistant.playbook import Playbook
from assistant.schema import Draft, Evidence, Explanation
from finetune.pii import EMAIL, PHONE_MASK, mask

NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|io|cn|ru|xyz)\b")
CJK = re.compile(r"[\u4e00-\u9fff]")
SENTENCE_END = re.compile(r"[.!?。！？][\"'”’」』)）]*\s*$")
MAX_TEXT = 300
MAX_SENTENCES = 2
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
# What a reason says a driver does to the risk; checked against the cited evidence's effect, so a
# drop in visits the model counts against the customer is not read out as a loyalty signal.
LOWERS = re.compile(
    r"(?i)(?<!not )(?<!n't )\b(?:lowers?|reduces?|decreases?|cuts?)\s+(?:the\s+|their\s+)?"
    r"(?:churn\s+)?risk|\b(?:good|positive|encouraging|healthy)\s+sign"
    r"|\bsigns? of (?:their\s+)?loyalty|\bloyalty signal"
    r"|\b(?:shows?|suggests?|indicates?)\b(?:(?!\bnot\b|n't|\bless\b|\bun)[^.,;]){0,30}"
    r"\b(?:loyal|loyalty|satisfied|engaged)\b(?!\s+(?:is|has)\s+(?:low|fall|drop|wan))"
    r"|(?<!不)(?<!没有)(?:降低|减少|减小)了?(?:其|客户的?)?(?:流失)?风险|风险(?:有所)?(?:降低|下降|减少)"
    r"|好的?迹象|积极的?信号|忠诚度(?:很|较)?高"
    r"|(?:表明|显示|说明)[^。，,；;不没低]{0,12}(?:忠诚|满意)(?!度?(?:较|很|偏|有所)?(?:低|下降|不足|差))")
RAISES = re.compile(
    r"(?i)(?<!not )(?<!n't )\b(?:raises?|increases?|adds?\s+to|drives?)\s+(?:the\s+|their\s+)?"
    r"(?:churn\s+)?risk|\b(?:warning|bad|worrying)\s+sign"
    r"|(?<!不)(?<!没有)(?:提高|增加|加大)了?(?:其|客户的?)?(?:流失)?风险|风险(?:有所)?(?:上升|增加|提高)"
    r"|危险信号|警示信号")
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


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    return yaml.safe_load(resources.files("prompts").joinpath("problems.yaml").read_text("utf-8"))


WHERE = re.compile(r"^(reason|action) (\d+)$")


def _where(where: str, lang: str) -> str:
    words = _catalogue()["where"][lang]
    m = WHERE.match(where)
    return words[m.group(1)].format(n=m.group(2)) if m else words["answer"]


class Problem(str):
    """One thing a check found. It reads as its English sentence wherever a string is expected
    (logs, the API, ``generate.prune``, the tests); ``say(lang)`` words it for the retry prompt in
    the draft's language (``prompts/problems.yaml``): a small model asked in Chinese fixes a
    Chinese list of problems more readily than an English one."""

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, **params: Any) -> Self:
        self = super().__new__(cls, cls._render(code, "en", params))
        self.code, self.params = code, params
        return self

    @staticmethod
    def _render(code: str, lang: str, params: dict[str, Any]) -> str:
        catalogue = _catalogue()
        fields = dict(params)
        if "where" in fields:
            fields["where"] = _where(fields["where"], lang)
        if "band" in fields:
            fields["band"] = catalogue["bands"][lang].get(fields["band"], fields["band"])
        if "effect" in fields:
            fields["effect"] = catalogue["effects"][lang][fields["effect"]]
        return catalogue["problems"][code][lang].format(**fields)

    def say(self, lang: str) -> str:
        return self._render(self.code, lang if lang in ("en", "zh") else "en", self.params)

    def __reduce__(self):  # pickles (the job queue, caches) as the problem, not a plain str
        return (_problem, (self.code, self.params))


def _problem(code: str, params: dict[str, Any]) -> Problem:
    return Problem(code, **params)


def numbers(text: str) -> set[float]:
    """Numbers as values: '1,234.50' and '1234.5' are the same claim."""
    out = set()
    for raw in NUMBER.findall(text):
        try:
            out.add(round(float(raw.replace(",", "")), 2))
        except ValueError:
            continue
    return out


def _language_problem(text: str, lang: str, where: str) -> Problem | None:
    unquoted = re.sub(r"[\"“「『].*?[\"”」』]", "", text)
    has_cjk = bool(CJK.search(unquoted))
    if lang == "zh" and not has_cjk:
        return Problem("not_chinese", where=where)
    if lang == "en" and has_cjk:
        return Problem("not_english", where=where)
    return None


def unquoted(text: str) -> str:
    """The writer's own words: what the customer said, quoted, is not a claim."""
    return QUOTED.sub(" ", text)


def risk_claim_problem(text: str, band: str, where: str) -> Problem | None:
    """A band or direction stated against the score: 'low risk' at a high score, 'likely to
    leave' at a low one, 'medium risk' when it is not medium. Patterns are tried in order and a
    matched phrase is blanked, so "not at high risk" is one claim (low), not two."""
    own = unquoted(text)
    for pattern, claim in BAND_CLAIMS:
        for hit in pattern.finditer(own):
            wrong = ((claim == "up" and band == "low") or (claim == "not high" and band == "high")
                     or (claim in ("low", "medium", "high") and claim != band))
            if wrong:
                return Problem("risk_claim", where=where, claim=hit.group(0), band=band)
        own = pattern.sub(lambda m: " " * len(m.group(0)), own)
    return None


def offer_problem(text: str, allowed: set[float], where: str) -> Problem | None:
    """An offer whose figure no playbook action states is a promise nobody made."""
    for m in OFFER.finditer(unquoted(text)):
        raw = next(g for g in m.groups() if g is not None)
        value = round(float(raw.replace(",", "")), 2)
        if value not in allowed:
            return Problem("offer", where=where, offer=m.group(0).strip())
    return None


def playbook_numbers(playbook: Playbook, lang: str) -> set[float]:
    return set().union(*(numbers(a.text(lang)) for a in playbook.actions.values()))


def prose_problem(text: str, where: str) -> Problem | None:
    """Evidence ids belong in the citations, not the sentence; a reason is short."""
    if EVIDENCE_ID.search(unquoted(text)):
        return Problem("evidence_id_in_text", where=where)
    if len(SENTENCE_BREAK.findall(unquoted(text).strip())) >= MAX_SENTENCES:
        return Problem("too_many_sentences", where=where, n=MAX_SENTENCES)
    return None


@lru_cache(maxsize=1)
def _subject_words() -> tuple[re.Pattern, dict[str, frozenset[str]]]:
    """One pattern over every group's words (a named group each) and each group's subjects."""
    groups = yaml.safe_load(resources.files("prompts").joinpath("subjects.yaml")
                            .read_text("utf-8"))["groups"]
    parts = []
    for name, g in groups.items():
        words = sorted([rf"\b{re.escape(w)}" for w in g["en"]]
                       + [re.escape(w) for w in g["zh"]], key=len, reverse=True)
        parts.append(f"(?P<{name}>{'|'.join(words)})")
    return (re.compile("|".join(parts), re.IGNORECASE),
            {name: frozenset(g["subjects"]) for name, g in groups.items()})


CLAUSE_BREAK = re.compile(r"[，,；;。！？!?：:](?!\d)|\.(?!\d)|但|而|并且|同时|因为|所以|却"
                          r"|(?i:\b(?:and|but|although|though|while|whereas|yet|so|because)\b)")


def direction_problem(text: str, cited: list[Evidence], where: str) -> Problem | None:
    """A reason that says what it cites lowers the risk when all of it raises the risk (or the
    other way round): session 28's drafts read "4 visits ... lowers the risk" and a visit count
    as loyalty, of evidence the model counted against the customer."""
    effects = [e.contribution for e in cited if e.contribution is not None]
    if not effects:
        return None
    own = unquoted(text)
    if all(c > 0.005 for c in effects) and (hit := LOWERS.search(own)):
        return Problem("wrong_direction", where=where, claim=hit.group(0), effect="up")
    if all(c < -0.005 for c in effects) and (hit := RAISES.search(own)):
        return Problem("wrong_direction", where=where, claim=hit.group(0), effect="down")
    return None


# The unit right after a figure: a span of days, or a count of things.
UNIT = re.compile(r"\s*(天|日|days?\b|次|笔|个|条|times?\b|orders?\b|visits?\b|returns?\b"
                  r"|(?:support\s+)?tickets?\b|reviews?\b)", re.IGNORECASE)
DAY_UNITS = {"天", "日", "day", "days"}


def _unit(text: str, end: int) -> str | None:
    m = UNIT.match(text, end)
    return None if m is None else ("days" if m.group(1).lower() in DAY_UNITS else "count")


def unit_problem(text: str, cited: list[Evidence], where: str) -> Problem | None:
    """A count said as days or days as a count: "最近 2 天内退货 3 次" when the evidence's 2 is
    "近 90 天 2 次" (two returns). A figure is judged only when the reason gives it a unit and
    every place the cited evidence states it has one."""
    own = unquoted(text)
    for m in NUMBER.finditer(own):
        said = _unit(own, m.end())
        if said is None:
            continue
        value = numbers(m.group(0))
        stated = [(_unit(e.text, n.end()), e) for e in cited for n in NUMBER.finditer(e.text)
                  if numbers(n.group(0)) == value]
        if stated and all(u is not None and u != said for u, _ in stated):
            return Problem("wrong_unit", where=where, number=m.group(0), source=stated[0][1].text)
    return None


# A thing said not to have happened: "no visits", "hasn't ordered", "近 30 天没有访问", "从未退货".
# "hasn't visited much" and "没怎么访问" say little, not none, and are not absence claims.
NOT_BEFORE = re.compile(r"(?i)(?:\b(?:no|zero|never|not|without)\b|n't)(?:\s+[a-z]+){0,2}\s+$"
                        r"|(?:没有|没|未|从未|无)(?:再|过|任何|在[^，。,.\d]{0,4})?\s*$")
LITTLE_AFTER = re.compile(r"(?i)[a-z]*\s+(?:much|often|frequently|regularly|as\b|many)")


def _absences(text: str) -> list[tuple[str, str]]:
    """(group, phrase) for every group word in ``text`` said not to have happened."""
    pattern, _ = _subject_words()
    breaks = [0] + [m.end() for m in CLAUSE_BREAK.finditer(text)]
    out = []
    for hit in pattern.finditer(text):
        start = max(b for b in breaks if b <= hit.start())
        before = NOT_BEFORE.search(text[start:hit.start()])
        if before and not LITTLE_AFTER.match(text, hit.end()):
            out.append((hit.lastgroup, text[start + before.start():hit.end()].strip()))
    return out


def absence_problem(text: str, cited: list[Evidence], where: str) -> Problem | None:
    """Saying something did not happen when what the reason cites counts it: session 30's
    Chinese draft read "近 30 天内没有访问网店，仅访问了 1 次" of "近 30 天只访问了 1 次". Every
    number was in the evidence and every word named the right thing, so no other check saw it.
    A claim is judged only against cited evidence about the same thing (``subjects.yaml``) that
    states a positive count of it and never its absence (a negation, or a 0): "no order for 153
    days" citing "no order for 153 days" and "5 orders" passes."""
    absent = _absences(unquoted(text))
    if not absent:
        return None
    _, subjects_of = _subject_words()
    for group, phrase in absent:
        about = [e for e in cited if subject_of(e) in subjects_of[group]]
        if any(0.0 in numbers(e.text) or any(g == group for g, _ in _absences(e.text))
               for e in about):
            continue
        counted = [e for e in about for n in NUMBER.finditer(e.text)
                   if _unit(e.text, n.end()) == "count" and max(numbers(n.group(0))) > 0]
        if counted:
            return Problem("false_absence", where=where, claim=phrase, source=counted[0].text)
    return None


# Guessing at a cause or a feeling the evidence does not state: "可能由于对产品性能或外观不满意",
# "perhaps they found a cheaper shop". An agent repeats a reason to the customer; a guess said as
# a reason is a claim nobody can check. "likely to leave" is a claim about the risk (risk_claim).
SPECULATION = re.compile(
    r"(?i)\b(?:perhaps|maybe|possibly|presumably|apparently)\b"
    r"|\b(?:may|might|could|probably|likely)\s+(?:have\s+)?(?:be\s+|been\s+)?"
    r"(?:due to|because|caused by|dissatisfied|unhappy|frustrated|disappointed|annoyed"
    r"|found|switched|moved|gone|shopping elsewhere|buying elsewhere|prefer|lost interest)"
    r"|\bseems?\s+(?:to\s+)?(?:be\s+)?(?:dissatisfied|unhappy|frustrated|disappointed)"
    r"|可能(?:是)?(?:由于|因为|因|出于|对|已经?|在别|转向|找到|去了|不满|失望)|或许|也许"
    r"|大概(?:是)?(?:因为|由于)|猜测|推测|估计(?:是)?(?:因为|由于)|似乎|看起来")


# A feeling said of the customer. Only what they did to say so (a rating, a review, a ticket, a
# return, a request to close the account) can ground it: session 31's Chinese draft read "近 30
# 天只访问了 4 次，这表明他们对店铺的体验不满意" of a visit count.
FEELING = re.compile(r"(?i)\b(?:dissatisf\w*|unhappy|frustrat\w*|disappoint\w*|annoyed|upset"
                     r"|angry)\b|不满|失望|生气|愤怒|沮丧")
VOICED = frozenset({"rating", "review", "tickets", "ticket", "returns", "return", "cancel"})


def speculation_problem(text: str, where: str, cited: list[Evidence] | None = None
                        ) -> Problem | None:
    """A guessed cause or feeling, said as if it were evidence; with ``cited`` (a reason's
    evidence), also a feeling said of the customer when nothing cited is the customer's voice."""
    own = unquoted(text)
    hit = SPECULATION.search(own)
    if hit is None and cited is not None and not any(subject_of(e) in VOICED for e in cited):
        hit = FEELING.search(own)
    return Problem("speculation", where=where, claim=hit.group(0)) if hit else None


def subject_of(e: Evidence) -> str:
    """What an evidence item is about: a fact's name, or an event's kind."""
    return e.id.removeprefix("fact:") if e.id.startswith("fact:") else e.kind


def subject_problem(text: str, cited: list[Evidence], where: str) -> Problem | None:
    """A figure said of the wrong thing: "no visit for 88 days" when 88 is the days since the
    last order. Every number may be in the cited evidence and the sentence still be false, so
    when a figure's clause names things (``prompts/subjects.yaml``), one of them must be what the
    figure comes from: "returned an order 12 days ago" names the return, "no visit for 88 days"
    names only visits. Clauses end at punctuation and at "and", "but", "但"...; a figure whose
    clause names nothing is not judged: vague is not wrong, and the number check already holds
    it to the evidence."""
    pattern, subjects_of = _subject_words()
    own = unquoted(text)
    hits = [(m.start(), m.end(), m.lastgroup, m.group(0)) for m in pattern.finditer(own)]
    if not hits:
        return None
    breaks = [m.start() for m in CLAUSE_BREAK.finditer(own)]
    known = set().union(*subjects_of.values())

    def clause(pos: int) -> int:
        return sum(b < pos for b in breaks)

    for m in NUMBER.finditer(own):
        value = numbers(m.group(0))
        sources = [e for e in cited if value and value <= numbers(e.text)]
        subjects = {subject_of(e) for e in sources}
        if not sources or not subjects <= known:
            continue  # invented (another check's) or about something no group names
        named = [h for h in hits if clause(h[0]) == clause(m.start())]
        if named and not any(subjects & subjects_of[h[2]] for h in named):
            return Problem("wrong_subject", where=where, number=m.group(0), word=named[0][3],
                           source=sources[0].text)
    return None


def coverage_problems(draft: Draft, required: Mapping[str, str]) -> list[Problem]:
    """Each required driver (evidence id -> its plain words) must be said by a reason: cited,
    and, when its words carry figures, with at least one of them. A reason that cites four ids
    and says "due to their recency, orders and rating" names a factor; it does not say it."""
    problems = []
    for sid, text in required.items():
        citing = [r for r in draft.reasons if sid in r.evidence]
        figures = numbers(text)
        if not any(not figures or numbers(r.text) & figures for r in citing):
            problems.append(Problem("driver_missing", sid=sid, text=text))
    return problems


def _contact_problem(text: str, where: str) -> Problem | None:
    if URL.search(text):
        return Problem("link", where=where)
    if EMAIL.search(text) or mask(text) != text or PHONE_MASK in text:
        return Problem("contact", where=where)
    return None


def check_draft(draft: Draft, evidence: Mapping[str, Evidence], customer_id: str,
                playbook: Playbook, facts: Mapping[str, float], lang: str,
                candidates: set[str] | None = None, required: Mapping[str, str] | None = None,
                band: str | None = None) -> list[Problem]:
    """All problems with a draft; an empty list means it may be shown. ``required``: the top
    drivers a reason must cite (evidence id -> words); ``band``: the score's band."""
    problems: list[Problem] = []
    if not draft.reasons:
        problems.append(Problem("no_reasons"))
    offers = playbook_numbers(playbook, lang)
    own_numbers = set().union(*(numbers(e.text) for e in evidence.values()
                                if e.customer_id == customer_id)) if evidence else set()
    for i, reason in enumerate(draft.reasons, 1):
        where = f"reason {i}"
        if not reason.evidence:
            problems.append(Problem("no_evidence", where=where))
        cited: list[Evidence] = []
        for eid in reason.evidence:
            item = evidence.get(eid)
            if item is None:
                problems.append(Problem("unknown_evidence", where=where, eid=eid))
            elif item.customer_id != customer_id:
                problems.append(Problem("other_customer", where=where, eid=eid))
            else:
                cited.append(item)
        if cited and all(e.kind == "score" for e in cited):
            problems.append(Problem("only_score", where=where))
        allowed = set().union(*(numbers(e.text) for e in cited)) if cited else set()
        invented = sorted(numbers(reason.text) - allowed)
        if invented:
            shown = ", ".join(f"{x:g}" for x in invented)
            problems.append(Problem("invented_numbers", where=where, shown=shown))
        if len(reason.text) > MAX_TEXT:
            problems.append(Problem("too_long", where=where, n=MAX_TEXT))
        if not SENTENCE_END.search(reason.text):
            problems.append(Problem("mid_sentence", where=where))
        for p in (_language_problem(reason.text, lang, where), _contact_problem(reason.text, where),
                  prose_problem(reason.text, where), offer_problem(reason.text, offers, where),
                  risk_claim_problem(reason.text, band, where) if band else None,
                  subject_problem(reason.text, cited, where),
                  direction_problem(reason.text, cited, where),
                  unit_problem(reason.text, cited, where),
                  absence_problem(reason.text, cited, where),
                  speculation_problem(reason.text, where, cited)):
            if p:
                problems.append(p)
    seen: set[str] = set()
    for i, action in enumerate(draft.actions, 1):
        where = f"action {i}"
        if action.id not in playbook:
            problems.append(Problem("not_in_playbook", where=where, id=action.id))
            continue
        if action.id in seen:
            problems.append(Problem("suggested_twice", where=where, id=action.id))
        seen.add(action.id)
        entry = playbook[action.id]
        if not entry.fits(facts):
            problems.append(Problem("does_not_apply", where=where, id=action.id,
                                    needs=entry.when.describe()))
        elif candidates is not None and action.id not in candidates:
            problems.append(Problem("not_candidate", where=where, id=action.id))
        if not SENTENCE_END.search(action.why):
            problems.append(Problem("mid_sentence", where=where))
        invented = sorted(numbers(action.why) - own_numbers - numbers(entry.text(lang)))
        if invented:
            problems.append(Problem("action_numbers", where=where,
                                    shown=", ".join(f"{x:g}" for x in invented)))
        for p in (_language_problem(action.why, lang, where), _contact_problem(action.why, where),
                  prose_problem(action.why, where), offer_problem(action.why, offers, where),
                  risk_claim_problem(action.why, band, where) if band else None,
                  speculation_problem(action.why, where)):
            if p:
                problems.append(p)
    if required:
        problems += coverage_problems(draft, required)
    return problems


def check_explanation(x: Explanation, playbook: Playbook, facts: Mapping[str, float]
                      ) -> list[Problem]:
    """The same checks on a finished explanation (what was actually shown)."""
    draft = Draft.model_validate({
        "reasons": [r.model_dump() for r in x.reasons],
        "actions": [{"id": a.playbook_id, "why": a.why} for a in x.actions]})
    by_id = {e.id: e for e in x.evidence}
    required = {sid: by_id[sid].text if sid in by_id else sid for sid in x.coverage}
    return check_draft(draft, by_id, x.customer_id, playbook, facts, x.language,
                       required=required, band=x.risk.band)
