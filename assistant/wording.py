"""Deterministic wording: reasons and actions from the same facts, without an LLM.

Used by the ``none`` backend and whenever an LLM draft fails its checks. Templates live in
``prompts/wording.<lang>.yaml``; every number they print is taken from the cited evidence, so this
wording passes the same checks an LLM draft must pass.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources

import yaml

from assistant.attributions import Attribution
from assistant.checks import SENTENCE_END
from assistant.playbook import Action, Playbook
from assistant.schema import Draft, DraftAction, DraftReason
from assistant.scoring import ScoredCustomer
from finetune.serialize import money

QUOTE = re.compile(r"\"(.*)\"|\"(.*)$")  # a quote cut by v2 serialization is left open


@lru_cache(maxsize=4)
def templates(lang: str) -> dict:
    return yaml.safe_load(resources.files("prompts").joinpath(f"wording.{lang}.yaml")
                          .read_text("utf-8"))


def reason_key(sid: str, kind: str) -> str:
    """What a segment is about: the fact name, or the event kind."""
    return sid.removeprefix("fact:") if sid.startswith("fact:") else kind


def _pace(ratio: float) -> str:
    return ("long overdue" if ratio > 2 else "overdue" if ratio > 1.2
            else "on schedule" if ratio >= 0.5 else "recent")


def _zh_fact(name: str, f: dict[str, float], t: dict) -> str | None:
    def i(x: float) -> int:
        return int(x)

    if name == "recency" and not math.isnan(f["gap_mean"]):
        return t["fact"]["recency_gap"].format(
            recency=i(f["recency_days"]), gap=round(f["gap_mean"]),
            pace=t["pace"][_pace(f["recency_over_gap"])])
    values = {"tenure": i(f["tenure_days"]), "orders": i(f["frequency"]),
              "monetary": money(f["monetary"]), "recency": i(f["recency_days"])
              if not math.isnan(f["recency_days"]) else 0,
              "avg_amount": money(f["avg_amount"]) if not math.isnan(f["avg_amount"]) else "",
              "amount_90d": money(f["amount_90d"]), "amount_prev_90d": money(f["amount_prev_90d"]),
              "n_returns": i(f["n_returns"]), "return_amount": money(f["return_amount"]),
              "returns_90d": i(f["returns_90d"]), "n_reviews": i(f["n_reviews"]),
              "rating_mean": f"{f['rating_mean']:.1f}" if not math.isnan(f["rating_mean"]) else "",
              "rating_last": i(f["rating_last"]) if not math.isnan(f["rating_last"]) else "",
              "n_tickets": i(f["n_tickets"]), "tickets_90d": i(f["tickets_90d"]),
              "visits_30d": i(f["visits_30d"])}
    template = t["fact"].get(name)
    return template.format(**values) if template else None


def _zh_event(a: Attribution, scored: ScoredCustomer, t: dict) -> str:
    days = a.days_ago or 0
    when = t["when"]["today"] if days == 0 else t["when"]["days"].format(days=days)
    match = QUOTE.search(a.text)
    amount = re.search(r"(?:order|return) ([\d,]+\.\d{2})", a.text)
    stars = re.search(r"review (\d)/5", a.text)
    template = t["event"].get(a.kind, t["event"]["other"])
    return template.format(when=when, amount=amount.group(1) if amount else "",
                           stars=f" {stars.group(1)}/5" if stars else "",
                           quote=next((g for g in match.groups() if g is not None), "")
                           if match else a.text).replace("：“”", "")


def drivers(attributions: list[Attribution], n: int = 3, floor: float = 0.005,
            share: float = 0.1) -> list[Attribution]:
    """Segments that raise the risk by a meaningful amount: at least ``floor`` in probability
    and ``share`` of the strongest one; a reason worth 0.0001 is noise, not a reason."""
    up = sorted((a for a in attributions if a.contribution > 0), key=lambda a: -a.contribution)
    if not up:
        return []
    cut = max(floor, share * up[0].contribution)
    return [a for a in up[:n] if a.contribution >= cut]


def _end(text: str, stop: str) -> str:
    """A full stop unless the text already ends a sentence by the checks' rule: a quote cut
    short (``…"``) is not an ending, so it gets one."""
    text = text.rstrip()
    return text if SENTENCE_END.search(text) else text + stop


def reason_text(a: Attribution, scored: ScoredCustomer, lang: str) -> str:
    if lang == "en":
        text = a.text.strip()
        text += '"' if text.count('"') % 2 else ""  # v2 left a cut quote open
        return _end(text[:1].upper() + text[1:], ".")
    t = templates(lang)
    if a.sid.startswith("fact:"):
        return _end(_zh_fact(a.sid.removeprefix("fact:"), scored.facts, t) or a.text, "。")
    return _end(_zh_event(a, scored, t), "。")


def rank_actions(playbook: Playbook, scored: ScoredCustomer, keys: list[str]) -> list[Action]:
    """Eligible actions, those that answer the top reasons first, then by priority."""
    def score(action: Action) -> tuple[int, int, int]:
        hits = [k for k in keys if k in action.addresses]
        first = min((keys.index(k) for k in hits), default=len(keys))
        return (-len(hits), first, -action.priority)

    return sorted(playbook.eligible(scored.facts), key=score)


def draft(scored: ScoredCustomer, attributions: list[Attribution], playbook: Playbook,
          lang: str, n_reasons: int = 3, n_actions: int = 2,
          ranked: list[Action] | None = None) -> Draft:
    """Reasons from the segments that raise the risk most; actions that answer them (in the
    order of ``ranked`` when given: measured effects first, see ``assistant.experiment``)."""
    t = templates(lang)
    chosen = drivers(attributions, n_reasons) or sorted(
        attributions, key=lambda a: -a.contribution)[:1]
    reasons = [DraftReason(text=reason_text(a, scored, lang), evidence=[a.sid]) for a in chosen]
    keys = [reason_key(a.sid, a.kind) for a in chosen]
    actions = []
    order = ranked if ranked is not None else rank_actions(playbook, scored, keys)
    for action in order[:n_actions]:
        hits = [k for k in keys if k in action.addresses]
        labels = [t["label"][k] for k in dict.fromkeys(hits) if k in t["label"]]
        sep = "、" if lang == "zh" else " and "
        why = t["why"].format(labels=sep.join(labels)) if labels else t["why_generic"]
        actions.append(DraftAction(id=action.id, why=why))
    return Draft(reasons=reasons, actions=actions)
