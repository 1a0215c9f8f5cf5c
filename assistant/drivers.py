"""What drives a customer's score, as an agent would say it: grouped, in plain words.

Attributions are per serialized segment ("283 days ago: order 69.34 of water bottle; ..."); an
agent needs reasons ("no order for 283 days; they usually order every 76 days"). This module
turns the one into the other:

- related segments become one driver: the return events with the returns fact, the tickets with
  the tickets fact, the reviews with the rating fact, the older orders with the orders fact,
  every cancel request together;
- an event whose weight comes from *when* it happened is shown as the fact it implies: the
  newest order joins the recency fact ("no order for N days"), not a line from the history;
- each driver is worded from the aggregates and the customer's own (masked) words, in English
  and Chinese (``prompts/wording.<lang>.yaml``, section ``driver``).

The worded drivers are also the evidence the LLM is given, so the deterministic reasons and the
LLM's facts are the same sentences, and every number a reason may print is in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import pandas as pd
import yaml

from assistant.attributions import Attribution
from assistant.scoring import ScoredCustomer
from finetune.pii import mask
from finetune.serialize import money

LANGS = ("en", "zh")
QUOTE_CHARS = 90  # a quote longer than this is cut at a word boundary
GROUP_OF = {"return": "returns", "ticket": "tickets", "review": "rating", "order": "orders",
            "cancel": "cancel"}
# Reason keys the playbook's ``addresses`` match, per driver.
# Drivers the customer stated themselves: a request to close the account is the reason an agent
# must never miss, yet the model may credit it little because the silence that follows it already
# says the customer is leaving (demo customer C00016: +0.035 against +0.37 for the gap since the
# last order). Such a driver is listed and required whenever it raises the risk above the noise
# floor, whatever its share of the strongest one.
STATED = ("cancel",)
KEYS = {"returns": ("returns", "return"), "tickets": ("tickets", "ticket"),
        "rating": ("rating", "review"), "orders": ("orders", "order"), "cancel": ("cancel",),
        "recency": ("recency",), "trend": ("trend",), "visits": ("visits",),
        "tenure": ("tenure",)}


@dataclass(frozen=True, eq=False)
class Driver:
    key: str  # recency, cancel, returns, tickets, rating, trend, visits, orders, tenure, or a kind
    sid: str  # the evidence id reasons cite: the fact, else the strongest event
    members: tuple[str, ...]  # every segment it stands for (the page highlights their events)
    contribution: float  # summed over the members, in probability points
    texts: Mapping[str, str] = field(default_factory=dict)  # plain words, by language
    days_ago: int | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return KEYS.get(self.key, (self.key,))

    def text(self, lang: str) -> str:
        return self.texts[lang]

    @property
    def events(self) -> list[str]:
        return [m for m in self.members if m.startswith("event:")]


@dataclass(frozen=True)
class CoverageRule:
    """Which drivers a written explanation must mention: always the strongest, and the next
    two when they are meaningfully large (in probability points and against the strongest)."""

    n: int = 3
    floor: float = 0.02
    share: float = 0.25
    min_top: float = 0.005  # below this even the strongest driver is noise, not a reason

    def required(self, drivers: list[Driver]) -> list[Driver]:
        up = [d for d in drivers if d.contribution > 0]
        if not up or up[0].contribution < self.min_top:
            return []
        cut = max(self.floor, self.share * up[0].contribution)
        return with_stated([up[0], *(d for d in up[1:self.n] if d.contribution >= cut)],
                           up, self.n, self.floor)


@lru_cache(maxsize=4)
def templates(lang: str) -> dict:
    """``prompts/wording.<lang>.yaml``: the drivers' sentences and the actions' labels."""
    return yaml.safe_load(resources.files("prompts").joinpath(f"wording.{lang}.yaml")
                          .read_text("utf-8"))


def _when(days: int | None, t: dict) -> str:
    days = int(days or 0)
    return t["when_driver"]["today"] if days == 0 else t["when_driver"]["days"].format(days=days)


def _quote(text: object, t: dict) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    s = " ".join(mask(text).split()).replace('"', "'")
    if len(s) > QUOTE_CHARS:
        cut = s[:QUOTE_CHARS].rsplit(" ", 1)[0] if " " in s[:QUOTE_CHARS] else s[:QUOTE_CHARS]
        s = cut.rstrip(",;:") + "…"
    return t["quote"].format(text=s)


def _pick(d: dict, name: str, n: int) -> str:
    """The singular template when there is exactly one and the language has one."""
    return d.get(f"{name}_one", d[name]) if n == 1 else d[name]


def _num(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _rows(history: pd.DataFrame) -> dict[str, Mapping]:
    """The customer's events by evidence id: one pass, then lookups."""
    if history.empty:
        return {}
    return {f"event:{r['event_id']}": r for r in history.to_dict("records")}


def _words(key: str, members: list[Attribution], f: Mapping[str, float],
           rows: Mapping[str, Mapping], lang: str) -> str:
    t = templates(lang)
    d = t["driver"]
    facts = {a.sid for a in members}
    events = sorted((a for a in members if a.sid.startswith("event:")),
                    key=lambda a: -a.contribution)
    strongest = events[0] if events else None
    row = rows.get(strongest.sid) if strongest else None
    when = _when(strongest.days_ago, t) if strongest else ""
    quote = _quote(row["text"], t) if row is not None else ""
    if key == "cancel":
        if len(events) > 1:
            newest = min(events, key=lambda a: a.days_ago or 0)
            r = rows.get(newest.sid)
            return d["cancel_many"].format(n=len(events), when=_when(newest.days_ago, t),
                                           quote=_quote(r["text"], t) if r is not None else "")
        return d["cancel"].format(when=when, quote=quote)
    if key == "recency":
        recency, gap = int(_num(f["recency_days"])), f["gap_mean"]
        if gap is None or math.isnan(gap):
            return d["recency_single"].format(recency=recency)
        name = ("recency_overdue" if _num(f["recency_over_gap"]) > 1.2
                else "recency_today" if recency == 0 else "recency_usual")
        return d[name].format(recency=recency, gap=round(gap))
    if key == "returns":
        if "fact:returns" in facts:
            n = int(_num(f["n_returns"]))
            return _pick(d, "returns", n).format(n=n,
                                       amount=money(_num(f["return_amount"])),
                                       recent=int(_num(f["returns_90d"])))
        return d["return_event"].format(when=when)
    if key == "tickets":
        if "fact:tickets" in facts:
            n = int(_num(f["n_tickets"]))
            text = _pick(d, "tickets", n).format(n=n,
                                       recent=int(_num(f["tickets_90d"])))
            newest = min(events, key=lambda a: a.days_ago or 0) if events else None
            r = rows.get(newest.sid) if newest else None
            if newest is not None:
                text += d["tickets_latest"].format(
                    when=_when(newest.days_ago, t),
                    quote=_quote(r["text"], t) if r is not None else "")
            return text
        return d["ticket_event"].format(when=when, quote=quote)
    if key == "rating":
        stars = _num(row["rating"]) if row is not None else 0.0
        has_fact = "fact:rating" in facts and not math.isnan(f["rating_mean"])
        if row is not None and 0 < stars and (stars <= 2 or not has_fact):
            name = "rated_one" if int(stars) == 1 else "rated"
            return d[name].format(stars=int(stars), when=when, quote=quote)
        if has_fact:
            n = int(_num(f["n_reviews"]))
            return _pick(d, "rating", n).format(mean=f"{_num(f['rating_mean']):.1f}", n=n,
                                      last=int(_num(f["rating_last"])))
        return d["review_event"].format(when=when, quote=quote)
    if key == "trend":
        now, before = _num(f["amount_90d"]), _num(f["amount_prev_90d"])
        trend = _num(f["spend_trend"])
        name = "trend_up" if trend > 0.2 else "trend_down" if trend < -0.2 else "trend_flat"
        return d[name].format(now=money(now), before=money(before))
    if key == "visits":
        n = int(_num(f["visits_30d"]))
        return d["visits_none"] if n == 0 else _pick(d, "visits", n).format(n=n)
    if key == "orders":
        if "fact:orders" in facts:
            if _num(f["frequency"]) <= 1:
                return d["orders_one"].format(monetary=money(_num(f["monetary"])))
            return d["orders"].format(n=int(_num(f["frequency"])),
                                      avg=money(_num(f["avg_amount"])))
        amount = _num(row["amount"]) if row is not None else 0.0
        return d["order_event"].format(amount=money(amount), when=when)
    if key == "tenure":
        return d["tenure"].format(days=int(_num(f["tenure_days"])))
    # Another kind of event (a note, a custom type): its kind and the customer's words.
    return d["other"].format(kind=strongest.kind if strongest else key, when=when, quote=quote)


def group(scored: ScoredCustomer, attributions: list[Attribution]) -> list[Driver]:
    """The customer's drivers, strongest first (by summed contribution)."""
    groups: dict[str, list[Attribution]] = {}
    orders = [a for a in attributions if a.kind == "order" and a.sid.startswith("event:")]
    newest_order = min(orders, key=lambda a: a.days_ago or 0).sid if orders else None
    present = {a.sid.removeprefix("fact:") for a in attributions if a.sid.startswith("fact:")}
    for a in attributions:
        if a.sid.startswith("fact:"):
            key = a.sid.removeprefix("fact:")
        elif a.sid == newest_order and "recency" in present:
            key = "recency"  # its weight is when it happened: the gap since it
        elif a.kind in GROUP_OF:
            key = GROUP_OF[a.kind]  # with its fact when the text states it
        else:
            key = a.sid  # an event on its own
        groups.setdefault(key, []).append(a)
    f, rows = scored.facts, _rows(scored.history)
    out = []
    for key, members in groups.items():
        fact = next((a for a in members if a.sid.startswith("fact:")), None)
        strongest = max(members, key=lambda a: a.contribution)
        primary = fact or strongest
        name = key if not key.startswith("event:") else strongest.kind
        texts = {lang: _words(name, members, f, rows, lang) for lang in LANGS}
        out.append(Driver(key=name, sid=primary.sid,
                          members=tuple([primary.sid] + [a.sid for a in members
                                                          if a is not primary]),
                          contribution=float(sum(a.contribution for a in members)),
                          texts=texts, days_ago=primary.days_ago))
    return sorted(out, key=lambda d: -d.contribution)


def top(drivers: list[Driver], n: int = 3, floor: float = 0.005, share: float = 0.1
        ) -> list[Driver]:
    """Drivers that raise the risk by a meaningful amount: at least ``floor`` in probability and
    ``share`` of the strongest one; a reason worth 0.0001 is noise, not a reason."""
    up = [d for d in drivers if d.contribution > 0]
    if not up:
        return []
    cut = max(floor, share * up[0].contribution)
    return with_stated([d for d in up[:n] if d.contribution >= cut], up, n, floor)


def with_stated(chosen: list[Driver], up: list[Driver], n: int, floor: float) -> list[Driver]:
    """``chosen`` plus every ``STATED`` driver of ``up`` (those raising the risk, strongest
    first) worth at least ``floor``, which take the places of the weakest others beyond ``n``;
    strongest first."""
    stated = [d for d in up if d.key in STATED and d.contribution >= floor and d not in chosen]
    if not stated:
        return chosen
    keep = chosen[:max(n - len(stated), 1)]
    return sorted([*keep, *stated], key=lambda d: -d.contribution)
