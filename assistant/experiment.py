"""The experiment built into the assistant: who is held out, whose first action is explored, and
how measured effects rank the suggested actions.

Assignments are a stable hash of the customer id and the period, so they are reproducible and
auditable (anyone can recompute who was in the holdout in a period) and do not change when a
page is reloaded. Only at-risk customers are assigned: the experiment measures what actions do
for the customers they are meant for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from assistant.playbook import Action, Playbook
from assistant.scoring import ScoredCustomer
from finetune.actions import HOLDOUT
from finetune.uplift import ActionEffect, UpliftModel

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
Arm = Literal["holdout", "explore", "normal", "not_at_risk", "off"]


@dataclass(frozen=True)
class ExperimentConfig:
    holdout: float = 0.1
    explore: float = 0.0
    period_days: int = 30
    at_risk: float = 0.3  # probability from which a customer is in the experiment
    value_per_customer: float = 100.0


@dataclass(frozen=True)
class Assignment:
    arm: Arm
    period: str  # the first day of the assignment period (ISO)
    why: str
    explore_pick: float = 0.0  # which fitting action an explored customer gets (uniform in [0,1))

    def to_dict(self) -> dict:
        return {"arm": self.arm, "period": self.period, "why": self.why}


def period_start(as_of: pd.Timestamp, days: int) -> pd.Timestamp:
    n = (as_of.normalize() - EPOCH).days // days
    return EPOCH + pd.Timedelta(days=n * days)


def unit(customer_id: str, period: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by customer, period and purpose."""
    digest = hashlib.sha256(f"{salt}|{period}|{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(customer_id: str, probability: float, as_of: pd.Timestamp,
           config: ExperimentConfig) -> Assignment:
    start = period_start(as_of, config.period_days)
    period = start.date().isoformat()
    if config.holdout <= 0 and config.explore <= 0:
        return Assignment("off", period, "no experiment is configured")
    if probability < config.at_risk:
        return Assignment("not_at_risk", period, "below the experiment's risk threshold")
    u = unit(customer_id, period, "holdout")
    if u < config.holdout:
        return Assignment(HOLDOUT, period, (
            f"holdout: do not contact. This customer is in the {config.holdout:.0%} of at-risk "
            f"customers left alone for the period from {period} ({config.period_days} days), "
            "chosen at random; comparing them with contacted customers is how the shop learns "
            "which actions really keep customers. Contacting them spoils the measurement."))
    v = unit(customer_id, period, "explore")
    if v < config.explore:
        return Assignment("explore", period, (
            "explore: the first suggested action was drawn at random among those that fit, to "
            "measure actions the playbook would rarely try first"), explore_pick=unit(
                customer_id, period, "pick"))
    return Assignment("normal", period, "")


def priority_actions(playbook: Playbook, features: pd.DataFrame, risk: pd.Series) -> pd.Series:
    """The playbook's first fitting action per row (its fixed priority), ``none`` if none fits:
    the default policy the learned one starts from (``finetune.uplift.UpliftModel``)."""
    picks = []
    for (_, row), p in zip(features.iterrows(), risk, strict=True):
        fit = playbook.eligible({**row.to_dict(), "probability": float(p)})
        picks.append(fit[0].id if fit else "none")
    return pd.Series(picks, index=features.index)


def default_policy(playbook: Playbook):
    """``priority_actions`` bound to a playbook, as ``UpliftModel.fit`` takes it."""
    return lambda features, risk: priority_actions(playbook, features, risk)


@dataclass(frozen=True)
class RankedAction:
    action: Action
    measured: bool
    evidence: str  # "measured: +4.1 points retained, 95% CI 1.2 to 7.0, n=1,240", or not yet
    uplift: float | None = None
    measurement: dict | None = None  # the evidence's figures (``ActionEffect.points``)


def rank(actions: Sequence[Action], effects: Mapping[str, ActionEffect],
         value_per_customer: float) -> list[RankedAction]:
    """Measured actions that pay first (by expected gain: uplift x value - cost), then the
    unmeasured ones in the playbook's order, then measured ones that do not pay; actions whose
    whole interval lies below zero (measured to lose customers) are left out."""
    paying, unmeasured, not_paying = [], [], []
    for action in actions:
        effect = effects.get(action.id)
        if effect is None or not (effect.measured and effect.causal):
            unmeasured.append(RankedAction(action, False, "no measurement yet"))
            continue
        if effect.ci_high < 0:
            continue
        gain = effect.uplift * value_per_customer - effect.cost_per_customer
        item = RankedAction(action, True, effect.label(), effect.uplift, effect.points())
        (paying if gain > 0 else not_paying).append((gain, item))
    paying.sort(key=lambda g: -g[0])
    return [i for _, i in paying] + unmeasured + [i for _, i in not_paying]


def explored(ranked: list[RankedAction], assignment: Assignment) -> list[RankedAction]:
    """For an explored customer, the randomly drawn action goes first."""
    if assignment.arm != "explore" or len(ranked) < 2:
        return ranked
    k = int(assignment.explore_pick * len(ranked))
    return [ranked[k]] + ranked[:k] + ranked[k + 1:]


def personalised(ranked: list[RankedAction], policy: UpliftModel,
                 scored: ScoredCustomer) -> list[RankedAction]:
    """The learned policy's action for this customer first, among those that fit them, with the
    uplift expected for customers like them; the rest keep their order."""
    features = scored.features.to_frame().T.set_axis([scored.customer_id])
    fits = {scored.customer_id: [r.action.id for r in ranked]}
    rec = policy.recommend(features.astype("float64"), allowed=fits).iloc[0]
    ids = [r.action.id for r in ranked]
    if rec["action_id"] not in ids:
        return ranked
    k = ids.index(rec["action_id"])
    first = ranked[k]
    if first.measured:
        expected = round(100 * float(rec["expected_uplift"]), 1)
        first = RankedAction(first.action, True, f"{first.evidence}; for customers like this "
                             f"one: {expected:+.1f} points expected", first.uplift,
                             {**(first.measurement or {}), "expected_points": expected})
    return [first] + ranked[:k] + ranked[k + 1:]
