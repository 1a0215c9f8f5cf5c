"""The LangChain layer: evidence and candidate actions in, a checked draft (or a refusal) out.

Customer-written text only ever enters the prompt as a JSON string inside an evidence line, so a
review cannot close the data block or pose as the system; the system prompt says it is data; and
whatever the model still makes of it has to pass ``checks`` before anyone sees it. A failing
draft gets one retry with the problems listed, then the caller falls back to deterministic wording.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from jinja2 import Environment, StrictUndefined
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from assistant.checks import (
    EVIDENCE_ID,
    MAX_SENTENCES,
    QUOTED,
    SENTENCE_BREAK,
    SENTENCE_END,
    Problem,
    check_draft,
    coverage_problems,
    numbers,
)
from assistant.llm import structured
from assistant.playbook import Action, Playbook
from assistant.schema import MAX_CITED, Draft, DraftAction, DraftReason, Evidence, draft_schema

JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
RETRY_TEMPERATURE = 0.7
_env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=16)
def template(name: str):
    return _env.from_string(resources.files("prompts").joinpath(name).read_text("utf-8"))


def evidence_line(e: Evidence) -> str:
    """One JSON object: the text is a quoted string, whatever the customer wrote in it."""
    item: dict[str, object] = {"id": e.id, "kind": e.kind, "text": e.text}
    if e.contribution is not None:
        # Words, not a number: a number here would be quoted by the model and fail the checks.
        item["effect"] = ("raises the risk" if e.contribution > 0.005 else
                          "lowers the risk" if e.contribution < -0.005 else "little effect")
    return json.dumps(item, ensure_ascii=False)


def action_line(a: Action, lang: str) -> str:
    return json.dumps({"id": a.id, "what": a.text(lang), "channel": a.channel, "cost": a.cost},
                      ensure_ascii=False)


def messages(customer_id: str, probability: float, band: str, cutoff: str,
             evidence: list[Evidence], actions: list[Action], lang: str,
             n_reasons: int = 3) -> list[BaseMessage]:
    bands_zh = {"low": "低", "medium": "中", "high": "高"}
    system = template(f"explain.system.{lang}.jinja").render(n_reasons=n_reasons)
    user = template(f"explain.user.{lang}.jinja").render(
        customer_id=json.dumps(customer_id, ensure_ascii=False), percent=round(100 * probability),
        band=band, band_zh=bands_zh[band], cutoff=cutoff,
        evidence=[evidence_line(e) for e in evidence],
        actions=[action_line(a, lang) for a in actions])
    return [SystemMessage(system), HumanMessage(user)]


def parse_draft(text: str) -> tuple[Draft | None, Problem | None]:
    match = JSON_OBJECT.search(text or "")
    if not match:
        return None, Problem("not_json")
    try:
        return Draft.model_validate_json(match.group(0)), None
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, Problem("schema", field=".".join(map(str, first["loc"])),
                             message=first["msg"])


@dataclass
class Generation:
    draft: Draft | None  # None: no attempt passed the checks
    attempts: int
    problems: list[Problem] = field(default_factory=list)  # of the last attempt
    raw: list[str] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)  # of the items ``prune`` removed
    added: list[str] = field(default_factory=list)  # drivers given their deterministic reason


def trim_to_sentence(text: str) -> str:
    """A sentence cut off by the length limit is shortened to its last full sentence."""
    text = text.strip()
    if not text or SENTENCE_END.search(text):
        return text
    ends = [m.end() for m in re.finditer(r"[.!?。！？](?=\s|$)", text)]
    return text[:ends[-1]] if ends and ends[-1] >= 10 else text


def strip_ids(text: str) -> str:
    """Evidence ids the model wrote into its sentence ("(fact:orders)") are removed: they are
    shown as the reason's citations. What is left is checked like any other text."""
    text = re.sub(r"\s*[\[(（【]\s*" + EVIDENCE_ID.pattern + r"(?:\s*[,，;]\s*"
                  + EVIDENCE_ID.pattern + r")*\s*[\])）】]", "", text)
    return re.sub(r"\s{2,}", " ", EVIDENCE_ID.sub("", text)).replace(" .", ".").strip()


def first_sentences(text: str, n: int = MAX_SENTENCES) -> str:
    """The first ``n`` sentences: a small model often adds a third that restates the first
    (most Chinese drafts that fell back did). Cutting it can remove claims, never add one, and
    the checks run on what is left. Breaks inside quoted customer text do not count."""
    masked = QUOTED.sub(lambda m: " " * len(m.group(0)), text)
    breaks = [m.end() for m in SENTENCE_BREAK.finditer(masked)]
    return text[:breaks[n - 1]].strip() if len(breaks) >= n else text


def repair(text: str) -> str:
    """What is mended before the checks, not rejected: evidence ids in the prose, a sentence
    cut off by the length limit, sentences beyond the second."""
    return trim_to_sentence(first_sentences(strip_ids(text)))


def complete_citations(draft: Draft, evidence: dict[str, Evidence], customer_id: str) -> Draft:
    """A reason quoting a number from another of this customer's evidence items cites it too.

    Small models often cite the risk score and a fact but take a number ("4 days") from a third
    item. Adding that item (strongest first) makes the citation complete; the checks then still
    require every number to be in the cited evidence, so nothing unsupported gets through.

    An id that names no evidence item is removed when the reason also cites real ones: the
    Chinese drafts of session 31 cited "effect:raises the risk" (the evidence line's effect
    word, shaped like an id) beside the right items. The reason is then judged on the evidence
    that exists; a reason citing only made-up ids keeps them and fails ``unknown_evidence``.
    """
    own = [e for e in evidence.values() if e.customer_id == customer_id]
    for reason in draft.reasons:
        known = [i for i in reason.evidence if i in evidence]
        if known:  # a made-up id beside real ones ('effect:raises the risk') is no citation
            reason.evidence = known
        cited = [evidence[i] for i in known]
        have = set().union(*(numbers(e.text) for e in cited)) if cited else set()
        for x in sorted(numbers(reason.text) - have):
            source = next((e for e in own if x in numbers(e.text)), None)
            if source is not None and len(reason.evidence) < MAX_CITED:
                reason.evidence.append(source.id)
                have |= numbers(source.text)
    return draft


def prune(draft: Draft, problems: list[Problem], spare: list[DraftAction] | None = None
          ) -> Draft | None:
    """The draft without the reasons and actions that failed a check, if something useful is
    left: every remaining item passed, and the output lists the problems of what was dropped,
    so nothing unchecked is shown and nothing is hidden. A missing driver is not the draft's
    fault as a whole: ``cover`` adds its reason; when every action failed, the ``spare``
    actions (the deterministic wording's, checked like the rest) stand in for them, as long as
    one of the model's reasons passed."""
    bad = {p.params["where"] for p in problems if "where" in p.params}
    if any("where" not in p.params and p.code != "driver_missing" for p in problems):
        return None  # a problem with the draft as a whole
    reasons = [r for i, r in enumerate(draft.reasons, 1) if f"reason {i}" not in bad]
    actions = [a for i, a in enumerate(draft.actions, 1) if f"action {i}" not in bad]
    if not reasons and not actions:
        return None  # nothing the model wrote passed: that is a fallback, not an LLM answer
    if not actions:
        actions = [a.model_copy(deep=True) for a in spare or []]
    if not actions:
        return None
    return Draft(reasons=reasons, actions=actions)


def cover(draft: Draft, required: dict[str, DraftReason], limit: int = 3) -> tuple[Draft, list[str]]:
    """The draft with the deterministic reason of each required driver it does not say, put
    first (strongest driver first), keeping as many of the model's reasons as fit. "Say" is the
    coverage check's: a reason that cites the driver but not its figures does not say it."""
    missing = [sid for sid, r in required.items() if coverage_problems(draft, {sid: r.text})]
    if not missing:
        return draft, []
    added = [required[sid].model_copy(deep=True) for sid in missing]
    room = max(limit - len(added), 0)
    return Draft(reasons=[*added, *draft.reasons[:room]], actions=draft.actions), missing


def generate(model: BaseChatModel, prompt: list[BaseMessage], evidence: dict[str, Evidence],
             customer_id: str, playbook: Playbook, facts: dict[str, float], lang: str,
             candidates: set[str], max_attempts: int = 2,
             required: dict[str, DraftReason] | None = None, band: str | None = None,
             spare_actions: list[DraftAction] | None = None) -> Generation:
    """``required``: the top drivers a reason must cite, with the deterministic reason added
    for any the last attempt still leaves out; ``band``: claims about the risk must agree;
    ``spare_actions``: shown when every action of the last attempt failed its checks."""
    own_ids = [e.id for e in evidence.values() if e.customer_id == customer_id]
    runnable = structured(model, draft_schema(own_ids, sorted(candidates)))
    history = list(prompt)
    out = Generation(draft=None, attempts=0)
    required = required or {}
    words = {sid: r.text for sid, r in required.items()}

    def check(d: Draft) -> list[Problem]:
        return check_draft(d, evidence, customer_id, playbook, facts, lang, candidates,
                           required=words, band=band)

    for attempt in range(max_attempts):
        out.attempts += 1
        # Greedy decoding would answer a retry with the same text: retries sample (seeded).
        call = runnable if attempt == 0 else runnable.bind(temperature=RETRY_TEMPERATURE)
        reply = call.invoke(history)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        out.raw.append(text)
        draft, error = parse_draft(text)
        if draft is not None:
            for reason in draft.reasons:
                reason.text = repair(reason.text)
            for action in draft.actions:
                action.why = repair(action.why)
            draft = complete_citations(draft, evidence, customer_id)
        problems = [error] if error else check(draft)  # type: ignore[arg-type]
        out.problems = problems
        if not problems:
            out.draft = draft
            return out
        if attempt == max_attempts - 1 and draft is not None:
            pruned = prune(draft, problems, spare_actions)
            if pruned is not None:
                covered, added = cover(pruned, required)
                if not check(covered):
                    out.draft, out.added = covered, added
                    out.dropped = [p for p in problems if p.code != "driver_missing"]
                    return out
        retry = template(f"explain.retry.{lang}.jinja").render(
            problems=[p.say(lang) for p in problems])
        # The failed answer is not put back in the context: a small model copies it verbatim.
        history = [*prompt[:-1], HumanMessage(f"{prompt[-1].content}\n\n{retry}")]
    return out
