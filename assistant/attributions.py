"""Which segments of a customer's history drove the score, by occlusion, and proof that it is so.

Occlusion (remove one segment, rescore) is exact for the served model, hybrid included, and costs
one extra forward pass per segment in a single batch: affordable at a few dozen segments. The
faithfulness check removes the top-attributed segments together and compares the drop with
removing random ones; an attribution method that fails it must not be shown to agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assistant.scoring import ScoredCustomer, Scorer


@dataclass(frozen=True)
class Attribution:
    sid: str
    kind: str
    text: str
    days_ago: int | None
    contribution: float  # probability with the segment minus without it: > 0 raises the risk


def attribute(scorer: Scorer, scored: ScoredCustomer) -> list[Attribution]:
    """One attribution per serialized segment, in segment order."""
    return attribute_many(scorer, [scored])[0]


def attribute_many(scorer: Scorer, customers: list[ScoredCustomer]) -> list[list[Attribution]]:
    """``attribute`` for a report chunk in one batch: same numbers, far fewer model calls."""
    requests = [(c, [{s.sid} for s in c.serialized.segments]) for c in customers]
    return [[Attribution(s.sid, s.kind, s.text, s.days_ago, c.probability - p)
             for s, p in zip(c.serialized.segments, probs)]
            for c, probs in zip(customers, scorer.variants_many(requests))]


def top(attributions: list[Attribution], n: int = 3, sign: int = 1) -> list[Attribution]:
    """The n segments that push the risk most in the direction of ``sign`` (+1 up, -1 down)."""
    ranked = sorted(attributions, key=lambda a: -sign * a.contribution)
    return [a for a in ranked[:n] if sign * a.contribution > 0]


@dataclass
class Faithfulness:
    n_customers: int
    k: int
    mean_drop_top: float  # mean fall in churn probability when the top-k segments are removed
    mean_drop_random: float
    ratio: float  # mean_drop_top / mean_drop_random (inf when random removal does not lower it)

    @property
    def passes(self) -> bool:
        """Top segments lower the risk, and at least twice as much as random ones do."""
        return self.mean_drop_top > 0 and self.mean_drop_top >= 2 * max(self.mean_drop_random, 0)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"n_customers": self.n_customers, "k": self.k,
                "mean_drop_top": self.mean_drop_top, "mean_drop_random": self.mean_drop_random,
                "ratio": self.ratio, "passes": self.passes}


def faithfulness(scorer: Scorer, customers: list[ScoredCustomer], k: int = 3,
                 seed: int = 0) -> Faithfulness:
    """Deletion test over customers with more than k segments."""
    rng = np.random.default_rng(seed)
    tested = [c for c in customers if len(c.serialized.segments) > k]
    if not tested:
        raise ValueError(f"no customer has more than {k} segments to test")
    requests = []
    for scored, attrs in zip(tested, attribute_many(scorer, tested)):
        segments = scored.serialized.segments
        top_k = {a.sid for a in sorted(attrs, key=lambda a: -a.contribution)[:k]}
        random_k = {segments[i].sid for i in rng.choice(len(segments), size=k, replace=False)}
        requests.append((scored, [top_k, random_k]))
    drops_top, drops_random = [], []
    for (scored, _), (p_top, p_random) in zip(requests, scorer.variants_many(requests)):
        drops_top.append(scored.probability - p_top)
        drops_random.append(scored.probability - p_random)
    top_mean, random_mean = float(np.mean(drops_top)), float(np.mean(drops_random))
    ratio = top_mean / random_mean if random_mean > 0 else float("inf")
    return Faithfulness(len(drops_top), k, top_mean, random_mean, ratio)
