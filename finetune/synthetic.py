"""A seeded simulator of e-commerce customers for the demo and the tests.

Customers buy at their own rhythm (with a year-end peak), return things, review, open tickets and
browse. Bad experiences lower their satisfaction, which raises their hazard of deciding to leave;
resilient (loyal) customers recover from a bad week quickly. A customer who decides to leave
either drifts away (fewer, smaller orders, fewer visits, sometimes saying so in a review or
ticket) or goes silently, and some close their account (``cancel``). Low-frequency stayers also
go 90 days without ordering, so inactivity labels are honest but not trivial to predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from finetune.synthetic_text import PRODUCTS, pick, review_text, ticket_text

COUNTRIES = {"en": (["GB", "US", "DE", "AU", "NL"], [0.4, 0.3, 0.12, 0.1, 0.08]),
             "zh": (["CN", "TW", "SG", "HK"], [0.6, 0.15, 0.15, 0.1])}


@dataclass(frozen=True)
class SyntheticConfig:
    customers: int = 2000
    seed: int = 0
    start: str = "2024-01-01"
    days: int = 730
    zh_share: float = 0.3
    campaign: bool = False  # add a randomised retention campaign (finetune.campaign)
    campaign_day: int | None = None  # default: days - horizon - 60
    campaign_horizon: int = 90
    campaign_replicates: int = 20  # Monte Carlo runs that estimate each customer's baseline


class _Sim:
    """Day-by-day simulation, vectorised over customers."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        n = cfg.customers
        rng = self.rng = np.random.default_rng(cfg.seed)
        self.lang = np.where(rng.random(n) < cfg.zh_share, "zh", "en")
        self.business = rng.random(n) < 0.15
        early = rng.random(n) < 0.35
        self.signup = np.where(early, -rng.integers(1, 400, n), rng.integers(0, int(cfg.days * 0.75), n))
        self.rate = rng.lognormal(np.log(0.8), 0.8, n) * np.where(self.business, 2.0, 1.0)
        self.basket = rng.lognormal(np.log(45), 0.5, n) * np.where(self.business, 3.0, 1.0)
        self.visit_rate = self.rate / 30 * rng.uniform(1.0, 3.0, n)
        self.p_issue = rng.beta(2, 25, n)
        self.p_return = rng.beta(2, 18, n)
        self.p_review = rng.beta(2, 6, n)
        self.resilience = rng.beta(4, 2, n)
        self.hazard0 = rng.lognormal(np.log(1 / 900), 0.5, n)
        self.satisfaction = np.zeros(n)
        self.decided = np.full(n, -1)  # day the customer decided to leave, -1 = not yet
        self.drift = np.zeros(n, dtype=int)
        self.gone = np.zeros(n, dtype=bool)
        self.dormant = np.zeros(n, dtype=bool)  # a quiet spell that is not churn
        self.rows: list[tuple] = []
        self.last_order: dict[int, str] = {}
        self.n_orders = 0
        self.forced: dict[int, list[int]] = {}  # day -> customers a campaign brought back
        self.no_return = np.zeros(n, dtype=bool)  # put off by a campaign: not back this horizon

    def emit(self, i: int, day: float, event: str, **fields) -> None:
        if day < self.cfg.days:
            self.rows.append((i, day, event, fields))

    def season(self, day: int) -> float:
        month = (pd.Timestamp(self.cfg.start) + pd.Timedelta(days=day)).month
        return {11: 1.6, 12: 1.8, 1: 0.8, 7: 0.9}.get(month, 1.0)

    def engagement(self, day: int) -> np.ndarray:
        """1 until the decision, then fading to 0.15 over the drift; 0 when gone."""
        e = np.ones(self.cfg.customers)
        drifting = self.decided >= 0
        frac = np.where(drifting, (day - self.decided) / np.maximum(self.drift, 1), 0.0)
        e = np.where(drifting, 1.0 - 0.85 * np.clip(frac, 0, 1), e)
        e = np.where(self.dormant, 0.08 * e, e)
        return np.where(self.gone, 0.0, e)

    def step(self, day: int) -> None:
        rng, n = self.rng, self.cfg.customers
        alive = (self.signup <= day) & ~self.gone
        eng = self.engagement(day)
        leaving = self.decided >= 0
        for i in self.forced.pop(day, []):
            self.order(int(i), day, 1.0, False)
        # Orders, and what follows them.
        p_order = np.clip(self.rate / 30 * self.season(day) * eng, 0, 0.9)
        for i in np.flatnonzero(alive & (rng.random(n) < p_order)):
            self.order(int(i), day, eng[i], bool(leaving[i]))
        # A bad week can happen to anyone; a question is just a question.
        for i in np.flatnonzero(alive & (rng.random(n) < 0.0015)):
            self.satisfaction[i] -= 1.5
            oid = self.last_order.get(int(i), f"O{i:05d}")
            self.emit(int(i), day + rng.random(), "ticket",
                      text=ticket_text(rng, self.lang[i], True, oid, bool(leaving[i]) and rng.random() < 0.4))
            if rng.random() < 0.5:
                self.emit(int(i), day + 1 + rng.random(), "review", rating=float(rng.integers(1, 3)),
                          item=pick(rng, PRODUCTS[self.lang[i]]),
                          text=review_text(rng, self.lang[i], 2, False))
        for i in np.flatnonzero(alive & (rng.random(n) < 0.002)):
            oid = self.last_order.get(int(i), f"O{i:05d}")
            self.emit(int(i), day + rng.random(), "ticket",
                      text=ticket_text(rng, self.lang[i], False, oid, False))
        visits = rng.poisson(self.visit_rate * eng * self.season(day)) * alive
        for i in np.flatnonzero(visits):
            for _ in range(int(visits[i])):
                self.emit(int(i), day + rng.random(), "visit")
        # Quiet spells (holidays, budgets) come and go, and some leavers come back.
        self.dormant ^= np.where(self.dormant, rng.random(n) < 1 / 60, rng.random(n) < 1 / 250)
        back = self.gone & (rng.random(n) < 1 / 500) & ~self.no_return
        self.gone[back], self.decided[back], self.satisfaction[back] = False, -1, 0.0
        # Satisfaction recovers, faster for resilient customers; low satisfaction raises the hazard.
        self.satisfaction *= 1 - 0.04 * self.resilience
        hazard = self.hazard0 * np.exp(-0.9 * self.satisfaction)
        decide = alive & ~leaving & (rng.random(n) < hazard)
        for i in np.flatnonzero(decide):
            self.decided[i] = day
            self.drift[i] = 0 if rng.random() < 0.35 else int(rng.integers(20, 100))
        done = alive & leaving & (day - self.decided >= self.drift)
        for i in np.flatnonzero(done):
            self.gone[i] = True
            if rng.random() < 0.2:
                self.emit(int(i), day + rng.random(), "cancel",
                          text="Please close my account." if self.lang[i] == "en" else "请注销我的账户。")

    def order(self, i: int, day: int, eng: float, leaving: bool) -> None:
        rng, lang = self.rng, self.lang[i]
        self.n_orders += 1
        oid = f"O{self.n_orders:06d}"
        self.last_order[i] = oid
        k = 1 + int(rng.poisson(0.6))
        items = "; ".join(dict.fromkeys(pick(rng, PRODUCTS[lang]) for _ in range(k)))
        amount = round(float(self.basket[i] * rng.lognormal(0, 0.35) * k * (0.6 + 0.4 * eng)), 2)
        self.emit(i, day + rng.random(), "order", amount=amount, quantity=float(k),
                  order_id=oid, item=items)
        issue = rng.random() < self.p_issue[i] * (2.0 if leaving else 1.0)
        if issue:
            self.satisfaction[i] -= 1.0
            self.emit(i, day + rng.integers(1, 6) + rng.random(), "ticket",
                      text=ticket_text(rng, lang, True, oid, leaving and rng.random() < 0.4))
        if rng.random() < self.p_return[i] + (0.3 if issue else 0.0):
            self.emit(i, day + rng.integers(3, 21) + rng.random(), "return", order_id=oid,
                      amount=round(amount * rng.uniform(0.3, 1.0), 2), quantity=1.0, item=items)
        if rng.random() < self.p_review[i]:
            mood = 4.6 - 2.5 * issue + 0.8 * min(self.satisfaction[i], 0) + rng.normal(0, 0.7)
            rating = int(np.clip(round(mood), 1, 5))
            says_leaving = leaving and rng.random() < 0.5
            self.emit(i, day + rng.integers(2, 15) + rng.random(), "review", rating=float(rating),
                      item=items, order_id=oid, text=review_text(rng, lang, rating, says_leaving))


def customer_ids(n: int) -> np.ndarray:
    return np.array([f"C{i + 1:05d}" for i in range(n)])


def events_frame(rows: list[tuple], ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    """The simulator's rows as canonical events."""
    return pd.DataFrame({
        "customer_id": ids[[r[0] for r in rows]],
        "ts": (start + pd.to_timedelta([r[1] for r in rows], unit="D")).floor("s"),
        "event": [r[2] for r in rows],
        **{col: [r[3].get(col) for r in rows]
           for col in ("amount", "quantity", "order_id", "item", "rating", "text")},
    })


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (events, customers) in the canonical schema, identical for identical configs.

    With ``cfg.campaign`` use ``finetune.campaign.generate_with_campaign``, which also returns the
    campaign's actions and its true effects.
    """
    sim = _Sim(cfg)
    for day in range(cfg.days):
        sim.step(day)
    return _frames(sim, cfg)


def _frames(sim: _Sim, cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    start = pd.Timestamp(cfg.start, tz="UTC")
    ids = customer_ids(cfg.customers)
    events = events_frame(sim.rows, ids, start)
    rng = np.random.default_rng(cfg.seed + 1)
    country = [rng.choice(COUNTRIES[lang][0], p=COUNTRIES[lang][1]) for lang in sim.lang]
    customers = pd.DataFrame({
        "customer_id": ids,
        "signup_ts": start + pd.to_timedelta(sim.signup, unit="D"),
        "country": country,
        "segment": np.where(sim.business, "business", "consumer"),
        "language": sim.lang,
    })
    return events, customers
