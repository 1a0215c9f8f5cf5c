"""Deterministic wording: reasons and actions from the same drivers, without an LLM.

Used by the ``none`` backend, as what an agent sees first while an LLM writes, and whenever an
LLM draft fails its checks. A reason is a driver's plain sentence (``assistant.drivers``), which
is also the evidence it cites, so this wording passes the same checks an LLM draft must pass.
Templates live in ``prompts/wording.<lang>.yaml``.
"""

from __future__ import annotations

from assistant.checks import SENTENCE_END
from assistant.drivers import Driver, templates, top
from assistant.playbook import Action, Playbook
from assistant.schema import Draft, DraftAction, DraftReason
from assistant.scoring import ScoredCustomer


def _end(text: str, stop: str) -> str:
    """A full stop unless the text already ends a sentence by the checks' rule: a quote cut
    short (``…"``) is not an ending, so it gets one."""
    text = text.rstrip()
    return text if SENTENCE_END.search(text) else text + stop


def reason_text(driver: Driver, lang: str) -> str:
    """One sentence an agent can say: the driver's words, capitalised, ended."""
    text = driver.text(lang).strip()
    if lang == "en":
        return _end(text[:1].upper() + text[1:], ".")
    return _end(text, "。")


def reason(driver: Driver, lang: str) -> DraftReason:
    return DraftReason(text=reason_text(driver, lang), evidence=[driver.sid])


def keys(drivers: list[Driver]) -> list[str]:
    """The reason kinds the playbook's ``addresses`` match, strongest driver first."""
    return list(dict.fromkeys(k for d in drivers for k in d.keys))


def rank_actions(playbook: Playbook, scored: ScoredCustomer, reason_keys: list[str]
                 ) -> list[Action]:
    """Eligible actions, those that answer the top reasons first, then by priority."""
    def score(action: Action) -> tuple[int, int, int]:
        hits = [k for k in reason_keys if k in action.addresses]
        first = min((reason_keys.index(k) for k in hits), default=len(reason_keys))
        return (-len(hits), first, -action.priority)

    return sorted(playbook.eligible(scored.facts), key=score)


def draft(scored: ScoredCustomer, drivers: list[Driver], playbook: Playbook,
          lang: str, n_reasons: int = 3, n_actions: int = 2,
          ranked: list[Action] | None = None) -> Draft:
    """Reasons from the drivers that raise the risk most; actions that answer them (in the
    order of ``ranked`` when given: measured effects first, see ``assistant.experiment``)."""
    t = templates(lang)
    # Nothing raises the risk much (a low score): the strongest driver either way says why.
    chosen = top(drivers, n_reasons) or sorted(drivers, key=lambda d: -abs(d.contribution))[:1]
    reasons = [reason(d, lang) for d in chosen]
    answered = keys(chosen)
    actions = []
    order = ranked if ranked is not None else rank_actions(playbook, scored, answered)
    for action in order[:n_actions]:
        hits = [k for k in answered if k in action.addresses]
        labels = [t["label"][k] for k in dict.fromkeys(hits) if k in t["label"]]
        sep = "、" if lang == "zh" else " and "
        why = t["why"].format(labels=sep.join(labels)) if labels else t["why_generic"]
        actions.append(DraftAction(id=action.id, why=why))
    return Draft(reasons=reasons, actions=actions)
