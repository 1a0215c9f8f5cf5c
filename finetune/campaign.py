"""A randomised retention campaign inside the simulator, with known heterogeneous effects.

The uplift estimates (``finetune.uplift``) need ground truth to be tested against, and real logs
never carry one: nobody observes what a customer would have done under every action. The
simulator can. On one day it picks the customers who look at risk (from their point-in-time
features), assigns each at random to ``holdout`` or one playbook action, and lets the action act
on the simulated customer:

* with probability ``r`` it *rescues* them (they stop drifting away, feel valued and order again
  within the horizon);
* with probability ``h`` it *puts them off* (they leave at once);
* otherwise nothing changes and they go on as they would have.

``r`` and ``h`` depend on what the customer did (an apology works for recent complainers, a coupon
for price-sensitive buyers, loyalty points little, unsolicited contact slightly harms loyal
customers). The true effect on the retention probability is then
``r * (1 - p0) - h * p0``, where ``p0`` is the customer's chance of ordering within the horizon
without any action, estimated by re-running the simulator from the campaign day many times. The
effects are written to a file only the benchmark reads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from finetune.actions import HOLDOUT
from finetune.features import compute_features
from finetune.labels import ChurnDefinition, eligible_customers
from finetune.synthetic import SyntheticConfig, _frames, _Sim, customer_ids, events_frame

# The campaign's arms: the default playbook's actions, their channel and cost per contact.
CAMPAIGN_ARMS: dict[str, tuple[str, float]] = {
    "apology_replacement": ("support", 4.0),
    "support_callback": ("phone", 3.0),
    "account_manager_call": ("phone", 8.0),
    "personal_coupon": ("email", 3.0),
    "loyalty_points": ("in_app", 0.5),
    "shipping_upgrade": ("email", 1.0),
    "winback_email": ("email", 0.2),
    "feedback_survey": ("email", 0.2),
}
ACTION_HOUR = 9  # the campaign goes out at 09:00 UTC on its day


@dataclass
class CampaignData:
    events: pd.DataFrame
    customers: pd.DataFrame
    actions: pd.DataFrame  # the canonical actions table (finetune.actions)
    truth: pd.DataFrame  # customer_id, action_id, p0, rescue, put_off, true_effect (bench only)
    campaign_ts: pd.Timestamp


def segments(features: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the true effects depend on; all of it is visible in point-in-time features."""
    f = features
    return {
        "complained": ((f["tickets_90d"] >= 1) | (f["returns_90d"] >= 1)
                       | (f["rating_last"].fillna(5) <= 2)).to_numpy(),
        "ticket": (f["tickets_90d"] >= 1).to_numpy(),
        "price_sensitive": (f["avg_amount"].fillna(0) < 50).to_numpy(),
        "loyal": ((f["frequency"] >= 8) & (f["recency_over_gap"].fillna(9) < 1.5)).to_numpy(),
        "lapsing": (f["recency_days"].fillna(0) >= 60).to_numpy(),
        "high_value": (f["monetary"] >= 1000).to_numpy(),
    }


def true_rates(features: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per arm, each customer's rescue and put-off probabilities."""
    s = segments(features)
    z = np.zeros(len(features))

    def pick(mask: np.ndarray, yes: float, no: float) -> np.ndarray:
        return np.where(mask, yes, no) + z

    loyal = s["loyal"]
    return {
        "apology_replacement": (pick(s["complained"], 0.30, 0.0), pick(s["complained"], 0, 0.02)),
        "support_callback": (pick(s["ticket"], 0.20, 0.0), pick(loyal, 0.04, 0.01)),
        "account_manager_call": (pick(s["high_value"], 0.15, 0.0),
                                 pick(s["high_value"], 0.0, 0.03)),
        # A coupon brings back price-sensitive buyers; to the others it is only money given away.
        "personal_coupon": (pick(s["price_sensitive"], 0.25, 0.0), z.copy()),
        "loyalty_points": (z + 0.02, z.copy()),
        "shipping_upgrade": (pick(s["complained"], 0.06, 0.01), z.copy()),
        "winback_email": (pick(s["lapsing"], 0.15, 0.0), pick(loyal, 0.05, 0.0)),
        "feedback_survey": (pick(s["complained"], 0.03, 0.0), pick(loyal, 0.04, 0.01)),
    }


def at_risk(features: pd.DataFrame) -> np.ndarray:
    """Who a campaign would target: overdue against their own rhythm, lapsing, or unhappy."""
    f = features
    return ((f["recency_over_gap"].fillna(9) >= 1.0) | (f["recency_days"].fillna(0) >= 60)
            | segments(f)["complained"]).to_numpy()


def _fork(sim: _Sim, idx: np.ndarray, copies: int, seed: int) -> _Sim:
    """A simulator of ``copies`` independent replicas of customers ``idx`` from sim's state."""
    n = sim.cfg.customers
    big = np.tile(idx, copies)
    fork = copy.copy(sim)
    for name, value in vars(sim).items():
        if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            setattr(fork, name, value[big].copy())
    fork.cfg = replace(sim.cfg, customers=len(big))
    fork.rows, fork.forced = [], {}
    fork.last_order = {j: sim.last_order.get(int(i), f"O{i:05d}") for j, i in enumerate(big)}
    fork.rng = np.random.default_rng([seed, 99])
    return fork


def baseline_retention(sim: _Sim, idx: np.ndarray, day: int, horizon: int, copies: int,
                       seed: int) -> np.ndarray:
    """Each customer's chance of an order in the horizon after the campaign, with no action."""
    fork = _fork(sim, idx, copies, seed)
    at = day + ACTION_HOUR / 24
    for d in range(day, day + horizon + 1):
        fork.step(d)
    ordered = np.zeros(len(idx) * copies, dtype=bool)
    for i, t, kind, _ in fork.rows:
        if kind == "order" and at < t < at + horizon:
            ordered[i] = True
    return ordered.reshape(copies, len(idx)).mean(axis=0)


def generate_with_campaign(cfg: SyntheticConfig) -> CampaignData:
    """The simulator's events with a randomised campaign on ``cfg.campaign_day``."""
    horizon = cfg.campaign_horizon
    day = cfg.campaign_day if cfg.campaign_day is not None else cfg.days - horizon - 60
    if not 60 <= day <= cfg.days - horizon:
        raise ValueError(f"campaign day {day} must be at least 60 and leave a {horizon}-day "
                         f"horizon inside the {cfg.days} simulated days")
    sim = _Sim(cfg)
    for d in range(day):
        sim.step(d)
    start = pd.Timestamp(cfg.start, tz="UTC")
    cutoff = start + pd.Timedelta(days=day)
    ids = customer_ids(cfg.customers)
    so_far = events_frame(sim.rows, ids, start)
    so_far = so_far[so_far["ts"] < cutoff]
    definition = ChurnDefinition(horizon=horizon)
    eligible = eligible_customers(so_far, cutoff, definition)
    feats = compute_features(so_far, cutoff, eligible, definition)
    target = feats[at_risk(feats)]
    idx = np.array([int(c[1:]) - 1 for c in target.index])
    p0 = baseline_retention(sim, idx, day, horizon, cfg.campaign_replicates, cfg.seed)
    rates = true_rates(target)

    rng = np.random.default_rng([cfg.seed, 7])
    # The holdout gets two shares: every action is compared with it.
    arms = np.array([HOLDOUT, HOLDOUT, *CAMPAIGN_ARMS])
    assigned = arms[rng.integers(0, len(arms), len(idx))]
    u = rng.random(len(idx))
    for k, (i, arm) in enumerate(zip(idx, assigned, strict=True)):
        if arm == HOLDOUT:
            continue
        r, h = rates[arm][0][k], rates[arm][1][k]
        if u[k] < r:  # rescued: back on track, and an order within the horizon
            sim.decided[i], sim.gone[i], sim.dormant[i] = -1, False, False
            sim.satisfaction[i] = max(sim.satisfaction[i], 0.0) + 1.0
            sim.forced.setdefault(day + int(rng.integers(1, horizon - 10)), []).append(int(i))
        elif u[k] < r + h:  # put off: leaves now and does not come back this horizon
            sim.decided[i], sim.drift[i], sim.gone[i], sim.no_return[i] = day, 0, True, True
    for d in range(day, cfg.days):
        sim.step(d)
    events, customers = _frames(sim, cfg)

    ts = cutoff + pd.Timedelta(hours=ACTION_HOUR)
    actions = pd.DataFrame({
        "customer_id": target.index.astype(str),
        "ts": ts,
        "action_id": assigned,
        "source": "random",
        "channel": [CAMPAIGN_ARMS[a][0] if a in CAMPAIGN_ARMS else pd.NA for a in assigned],
        "cost": [CAMPAIGN_ARMS[a][1] if a in CAMPAIGN_ARMS else 0.0 for a in assigned],
        "agent": f"campaign-{cutoff.date()}",
    })
    truth = pd.concat([pd.DataFrame({
        "customer_id": target.index.astype(str), "action_id": arm, "p0": p0,
        "rescue": r, "put_off": h, "true_effect": r * (1 - p0) - h * p0,
    }) for arm, (r, h) in rates.items()], ignore_index=True)
    return CampaignData(events=events, customers=customers, actions=actions, truth=truth,
                        campaign_ts=ts)
