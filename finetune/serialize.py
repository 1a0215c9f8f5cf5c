"""Turn a customer's history before a cutoff into one text the encoder reads.

The text is a list of segments: header facts first (tenure, orders, recency against the usual
gap, spend trend, returns, ratings, tickets, visits), then events newest first with relative days,
amounts, items, ratings and quoted customer text. Segments keep their ids so attributions can point
at them. The token budget drops the oldest events first; header facts stay unless the budget is
smaller than the header itself, when the least important facts (the last ones) go. The output is
a pure function of (history before the cutoff, version, budget), so it is deterministic and
cannot leak the future.

Version 3 (default) spends the budget on the history before the words: events are placed in their
bare form (when, what, rating) and quotes fill a reserve of a quarter of the budget plus whatever
the events leave, newest first. Version 2 quoted every event in full, so on Amazon reviews (about
48 tokens a quote) the text arm kept 2-3 events where ``--no-text`` kept 6: text displaced the
rhythm the encoder reads. Version 2 stays readable for models trained on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finetune.labels import DAY, as_cutoff

SERIALIZATION_VERSION = "3"
SUPPORTED_VERSIONS = ("2", "3")
QUOTE_SHARE = 0.25  # v3: budget share held for the newest quotes (a new complaint's words)
MIN_QUOTE_TOKENS = 8  # v3: a quote cut shorter than this says nothing
SEPARATOR = " | "
MAX_EVENT_TOKENS = 48  # reviews, tickets: the customer's own words carry the signal
MAX_ORDER_TOKENS = 24  # orders, returns: short, so that more of the buying rhythm fits
MAX_TEXT_CHARS = 400
SENTENCE_COLUMNS = ("event", "amount", "item", "rating", "text")
FIT_CACHE_SIZE = 200_000  # (sentence, cap) pairs; a few tens of MB at most


@dataclass(frozen=True)
class Segment:
    sid: str  # "fact:<name>" or "event:<event_id>"
    kind: str  # "fact" or the event type
    text: str
    n_tokens: int = 0
    days_ago: int | None = None


@dataclass
class Serialized:
    customer_id: str
    cutoff: pd.Timestamp
    segments: list[Segment] = field(default_factory=list)
    n_dropped: int = 0  # events left out by the budget (the oldest)
    version: str = SERIALIZATION_VERSION

    @property
    def text(self) -> str:
        return SEPARATOR.join(s.text for s in self.segments)

    def without(self, sids: Iterable[str]) -> str:
        """The text with some segments removed: for occlusion attributions and ablations."""
        drop = set(sids)
        return SEPARATOR.join(s.text for s in self.segments if s.sid not in drop)


def _prefix_fit(costs: list[int], room: int) -> int:
    """How many of ``costs``, taken in order, fit in ``room``."""
    total = np.cumsum(costs)
    return int(np.searchsorted(total, room, side="right")) if len(costs) else 0


def money(x: float) -> str:
    return f"{x:,.2f}"


def _plural(n: float, word: str) -> str:
    n = int(n)
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _since(days: float) -> str:
    """Words for a span: encoders read 'over six months' far better than '212'."""
    for limit, words in ((7, "this week"), (31, "this month"), (92, "one to three months"),
                         (183, "three to six months")):
        if days < limit:
            return words
    return "over six months"


def _buyer(orders: float) -> str:
    return ("one-time buyer" if orders <= 1 else "occasional buyer" if orders <= 3
            else "regular buyer" if orders <= 10 else "frequent buyer")


# Which aggregates each header fact states: the one map between what the trees read and what the
# text says. Attributions credit a feature's TreeSHAP value to the fact that states it, and a
# deletion test that removes a fact resets these aggregates too. ``n_cancels`` has no header
# fact: the cancel events themselves carry it.
FACT_FEATURES: dict[str, tuple[str, ...]] = {
    "tenure": ("tenure_days",),
    "orders": ("frequency", "monetary", "avg_amount", "n_30d", "n_90d", "n_180d"),
    "recency": ("recency_days", "gap_mean", "gap_std", "recency_over_gap",
                "days_since_any_event"),
    "trend": ("amount_30d", "amount_90d", "amount_180d", "amount_prev_90d", "spend_trend"),
    "returns": ("n_returns", "return_amount", "returns_90d", "return_rate"),
    "rating": ("n_reviews", "rating_mean", "rating_min", "rating_last", "n_low_ratings"),
    "tickets": ("n_tickets", "tickets_90d"),
    "visits": ("n_visits", "visits_30d"),
}
EVENT_FEATURES: dict[str, tuple[str, ...]] = {"cancel": ("n_cancels",)}


def header_facts(f: pd.Series) -> list[tuple[str, str]]:
    """(name, sentence) pairs from one row of ``features.FEATURE_COLUMNS``; only facts that exist."""
    facts = [("tenure", f"customer for {int(f['tenure_days'])} days ({_since(f['tenure_days'])})")]
    if f["frequency"] > 0:
        facts.append(("orders", (f"{_plural(f['frequency'], 'order')} ({_buyer(f['frequency'])}), "
                                f"{money(f['monetary'])} total, {money(f['avg_amount'])} on "
                                "average")))
        recency = f"last order {int(f['recency_days'])} days ago ({_since(f['recency_days'])})"
        if math.isnan(f["gap_mean"]):
            facts.append(("recency", f"{recency}, only one order so far"))
        else:
            ratio = f["recency_over_gap"]
            pace = ("long overdue" if ratio > 2 else "overdue" if ratio > 1.2
                    else "on schedule" if ratio >= 0.5 else "recent")
            facts.append(("recency", (f"{recency}, usually every {round(f['gap_mean'])} days: "
                                     f"{pace}")))
        if f["amount_90d"] + f["amount_prev_90d"] > 0:
            trend = f["spend_trend"]
            word = "up" if trend > 0.2 else "down" if trend < -0.2 else "flat"
            facts.append(("trend", (f"spend {word}: {money(f['amount_90d'])} in the last 90 days "
                                   f"against {money(f['amount_prev_90d'])} before")))
    if f["n_returns"] > 0:
        facts.append(("returns", (f"{_plural(f['n_returns'], 'return')} "
                                 f"({money(f['return_amount'])}), {int(f['returns_90d'])} recent")))
    if f["n_reviews"] > 0 and not math.isnan(f["rating_mean"]):
        facts.append(("rating", (f"average rating {f['rating_mean']:.1f} from "
                                f"{_plural(f['n_reviews'], 'review')}, last {int(f['rating_last'])}")))
    if f["n_tickets"] > 0:
        facts.append(("tickets", (f"{_plural(f['n_tickets'], 'support ticket')}, "
                                 f"{int(f['tickets_90d'])} in the last 90 days")))
    if f["n_visits"] > 0:
        facts.append(("visits", f"{_plural(f['visits_30d'], 'visit')} in the last 30 days"))
    return facts


def _quote(text: object, include_text: bool) -> str:
    if not include_text or text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    s = " ".join(str(text).split())[:MAX_TEXT_CHARS]
    return f' "{s}"' if s else ""


def event_sentence(row: Mapping[str, Any], days_ago: int, include_text: bool = True) -> str:
    when = "today" if days_ago == 0 else f"{days_ago} days ago"
    kind = str(row["event"])
    amount = row["amount"]
    item = row["item"] if isinstance(row["item"], str) and row["item"] else ""
    of = f" of {item}" if item else ""
    paid = f" {money(amount)}" if isinstance(amount, float) and not math.isnan(amount) else ""
    if kind == "order":
        return f"{when}: order{paid}{of}"
    if kind == "return":
        return f"{when}: return{paid}{of}"
    if kind == "review":
        rating = row["rating"]
        stars = f" {int(rating)}/5" if isinstance(rating, float) and not math.isnan(rating) else ""
        return f"{when}: review{stars}{of}{_quote(row['text'], include_text)}"
    if kind == "ticket":
        return f"{when}: support ticket{_quote(row['text'], include_text)}"
    if kind == "cancel":
        return f"{when}: asked to close the account{_quote(row['text'], include_text)}"
    return f"{when}: {kind}{paid}{of}{_quote(row['text'], include_text)}"


class Serializer:
    """Budget-aware serializer; the tokenizer only counts tokens, it never changes the text order."""

    def __init__(self, tokenizer, max_tokens: int = 256, include_text: bool = True,
                 skip_events: Sequence[str] = ("visit", "note"),
                 version: str = SERIALIZATION_VERSION) -> None:
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"serialization version {version!r} is not one this code reads "
                             f"({', '.join(SUPPORTED_VERSIONS)})")
        self.version = version
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.include_text = include_text
        self.skip_events = tuple(skip_events)
        self.sep_tokens = len(tokenizer(SEPARATOR.strip(), add_special_tokens=False)["input_ids"])
        self.special = tokenizer.num_special_tokens_to_add(pair=False)
        self._fitted: dict[tuple[str, int], tuple[str, int]] = {}

    def _fit(self, texts: list[str], caps: list[int]) -> tuple[list[str], list[int]]:
        """Cut each text to its cap in tokens (at a token boundary) and count its tokens.

        Memoised on (text, cap): a report's occlusion variants re-serialize the same customer
        about twenty times with one event or fact gone, so nearly every sentence was seen.
        """
        keys = list(zip(texts, caps))
        todo = list(dict.fromkeys(k for k in keys if k not in self._fitted))
        if len(self._fitted) + len(todo) > FIT_CACHE_SIZE:  # full: start over with this call's
            self._fitted.clear()
            todo = list(dict.fromkeys(keys))
        if todo:
            enc = self.tokenizer([t for t, _ in todo], add_special_tokens=False,
                                 return_offsets_mapping=True)
            for (text, cap), ids, offsets in zip(todo, enc["input_ids"], enc["offset_mapping"]):
                key = (text, cap)
                if len(ids) > cap:
                    text = text[: offsets[cap - 2][1]] + " …"
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                self._fitted[key] = (text, len(ids))
        done = [self._fitted[k] for k in keys]
        return [t for t, _ in done], [n for _, n in done]

    def _plan_events(self, bare: list[int], full: list[int], room: int) -> tuple[int, list[int]]:
        """v3: how many events (newest first) fit bare, and each kept event's token allowance.

        Events fit in ``room`` less a quote reserve, then quotes take the reserve and any
        leftover newest first (the last one cut), then older bare events take what remains.
        Without quotes this is exactly the bare newest-first fill.
        """
        sep = self.sep_tokens
        extra = [f - b for b, f in zip(bare, full)]
        costs = [b + sep for b in bare]
        reserve = min(int(self.max_tokens * QUOTE_SHARE), sum(extra[:_prefix_fit(costs, room)]))
        k = _prefix_fit(costs, room - reserve)
        left = room - sum(bare[:k]) - sep * k
        allow = list(bare[:k])
        for j in range(k):
            if extra[j] <= 0 or left < min(extra[j], MIN_QUOTE_TOKENS):
                continue
            take = min(extra[j], left)
            allow[j] += take
            left -= take
        for b in bare[k:]:
            if b + sep > left:
                break
            allow.append(b)
            left -= b + sep
        return len(allow), allow

    def serialize(self, customer_id: str, cutoff: pd.Timestamp, features: pd.Series,
                  history: pd.DataFrame) -> Serialized:
        """``history``: this customer's events (any order); only those before ``cutoff`` are used."""
        cutoff = as_cutoff(cutoff)
        hist = history[(history["ts"] < cutoff) & ~history["event"].isin(self.skip_events)]
        hist = hist.sort_values("ts", ascending=False, kind="stable")
        facts = header_facts(features)
        days = np.floor((cutoff - hist["ts"]) / DAY).astype(int).to_numpy()
        event_ids = hist["event_id"].astype(str).tolist() if "event_id" in hist else [
            f"{customer_id}:{ts.isoformat()}:{ev}" for ts, ev in zip(hist["ts"], hist["event"])]
        # Plain dicts of the columns a sentence reads: iterrows built a Series per event and
        # to_dict copied every column, each about a third of a report's serialization time.
        columns = [c for c in SENTENCE_COLUMNS if c in hist.columns]
        rows = [dict(zip(columns, values))
                for values in zip(*(hist[c].tolist() for c in columns))]
        sentences = [event_sentence(row, int(d), self.include_text) for row, d in zip(rows, days)]
        kinds = hist["event"].astype(str).tolist()
        caps = [MAX_ORDER_TOKENS if kind in ("order", "return") else MAX_EVENT_TOKENS
                for kind in kinds]
        quoted = self.version == "3" and self.include_text  # v3 also needs each bare sentence
        bare = [event_sentence(row, int(d), False) for row, d in zip(rows, days)] if quoted else []
        texts, counts = self._fit([t for _, t in facts] + sentences + bare,  # one tokenizer call
                                  [MAX_EVENT_TOKENS] * len(facts) + caps + caps[:len(bare)])
        budget = self.max_tokens - self.special
        segments: list[Segment] = []
        used = 0
        for i, (name, _) in enumerate(facts):
            cost = counts[i] + (self.sep_tokens if i else 0)
            if used + cost > budget:
                break  # a tiny budget: keep the most important facts (they come first)
            segments.append(Segment(f"fact:{name}", "fact", texts[i], counts[i]))
            used += cost
        f, e = len(facts), len(facts) + len(sentences)
        texts, counts, bare, bare_counts = texts[f:e], counts[f:e], texts[e:], counts[e:]
        if quoted:
            kept, allow = self._plan_events(bare_counts, counts, budget - used)
            for j in range(kept):
                if allow[j] == bare_counts[j]:
                    texts[j], counts[j] = bare[j], bare_counts[j]
                elif allow[j] < counts[j] or texts[j].count('"') % 2:  # cut: close the quote
                    texts[j], counts[j] = self._cut(sentences[j], min(allow[j], counts[j]),
                                                    bare[j], bare_counts[j])
        else:
            kept = _prefix_fit([c + self.sep_tokens for c in counts], budget - used)
        segments += [Segment(f"event:{event_ids[j]}", kinds[j], texts[j], counts[j], int(days[j]))
                     for j in range(kept)]
        return Serialized(customer_id, cutoff, segments, n_dropped=len(sentences) - kept,
                          version=self.version)

    def _cut(self, text: str, cap: int, bare: str, bare_count: int) -> tuple[str, int]:
        """A quoted sentence cut to ``cap`` tokens; the bare sentence if re-tokenizing the cut
        text overshoots (it can by a token at the seam)."""
        for c in (cap - 1, cap - 2):  # one token for the closing quote
            (cut,), _ = self._fit([text], [c])
            cut += '"' if cut.count('"') % 2 else ""
            n = len(self.tokenizer(cut, add_special_tokens=False)["input_ids"])
            if n <= cap:
                return cut, n
        return bare, bare_count

    def serialize_snapshots(self, events: pd.DataFrame, snapshots: pd.DataFrame) -> list[Serialized]:
        """One ``Serialized`` per snapshot row (customer_id, cutoff, feature columns)."""
        by_customer = {cid: frame for cid, frame in
                       events.groupby("customer_id", observed=True, sort=False)}
        empty = events.iloc[0:0]
        return [self.serialize(snap["customer_id"], snap["cutoff"], snap,
                               by_customer.get(snap["customer_id"], empty))
                for _, snap in snapshots.iterrows()]
