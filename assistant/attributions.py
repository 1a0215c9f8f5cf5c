"""Which segments of a customer's history drove the score, and proof that it is so.

The served model is a stack of some of ``z = b + w_e * encoder_logit(text) +
w_t * trees_margin(aggregates) + w_l * logreg_logit(aggregates)`` (its inputs were chosen on
validation). Occlusion alone undervalues what the aggregates carry: removing the header fact
"last order 280 days ago" changes the text while the trees still read ``recency_days = 280``, so
the strongest driver got +0.005. Here each input is attributed by the method that is exact for it:

- the trees by TreeSHAP (LightGBM's own ``pred_contrib=True``: per feature, in the margin);
- logistic regression by its own terms (coefficient times standardised value, per feature);
- BG/NBD by the exact two-player Shapley split of its logit between recency and order count;
- both feature-wise in the stack's log-odds, each feature credited to the header fact that
  states it (``finetune.serialize.FACT_FEATURES``; ``n_cancels`` to the cancel events);
- the encoder, when the stack reads it, by occlusion of one segment's text at a time;

all combined in the stack's log-odds with its weights, then expressed in probability points as
``p - sigmoid(z - c)``: what removing that segment's share alone would do to the shown score.
The encoder scored alone keeps plain occlusion. The deletion test removes the top-attributed
segments together and compares the drop with removing random ones; with ``reference`` a removed
fact also resets the aggregates it states, so the trees see it gone too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assistant.scoring import ScoredCustomer, Scorer
from finetune.btyd import BTYD_COLUMNS
from finetune.features import FEATURE_COLUMNS
from finetune.serialize import EVENT_FEATURES, FACT_FEATURES


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
    if not customers:
        return []
    if scorer.kind == "served":
        return _stack_attributions(scorer, customers)
    return occlusion_many(scorer, customers)


def occlusion_many(scorer: Scorer, customers: list[ScoredCustomer]) -> list[list[Attribution]]:
    """Remove one segment (an event from the history, a fact from the text) and rescore."""
    requests = [(c, [{s.sid} for s in c.serialized.segments]) for c in customers]
    return [[Attribution(s.sid, s.kind, s.text, s.days_ago, c.probability - p)
             for s, p in zip(c.serialized.segments, probs)]
            for c, probs in zip(customers, scorer.variants_many(requests))]


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def _booster(trees) -> object:
    model = trees.model
    return getattr(model, "booster_", None) or model.booster


def tree_contributions(trees, features: pd.DataFrame) -> pd.DataFrame:
    """TreeSHAP in the trees' margin, one column per feature plus ``bias``; rows sum to the
    margin whose sigmoid is the trees' probability."""
    cols = list(trees.used_columns)
    contrib = _booster(trees).predict(trees.design(features), pred_contrib=True)  # type: ignore[attr-defined]
    return pd.DataFrame(np.asarray(contrib), columns=[*cols, "bias"], index=features.index)


def feature_logodds(stack, features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The aggregate inputs' share of the stack's log-odds, per feature (weighted TreeSHAP,
    logistic-regression terms and BG/NBD's Shapley split), and those inputs' weighted total per
    row (biases included) so the stack's logit can be rebuilt."""
    weights = stack.weights
    per = pd.DataFrame(0.0, index=features.index, columns=list(FEATURE_COLUMNS))
    total = np.zeros(len(features))
    for name, explain in (("lightgbm", lambda m: tree_contributions(m, features)),
                          ("logreg", lambda m: m.linear().contributions(features)),
                          ("bgnbd", lambda m: m.contributions(features))):
        if name not in weights:
            continue
        contrib = explain(stack.bases[name])
        for col in BTYD_COLUMNS:  # BG/NBD's outputs, when a base reads them, state recency
            if col in contrib.columns:
                contrib[BTYD_CREDIT] += contrib.pop(col)
        w = weights[name]
        total += w * contrib.sum(axis=1).to_numpy()
        cols = [c for c in contrib.columns if c != "bias"]
        per[cols] = per[cols].to_numpy() + w * contrib[cols].to_numpy()
    return per, total


# P(alive) and P(no purchase) are the formal "overdue for their usual gap": credited to the
# recency feature, whose fact says "last order N days ago, usually every M days".
BTYD_CREDIT = "recency_days"


def _credit(segments, shap: pd.Series) -> np.ndarray:
    """Each segment's share of the aggregates' log-odds: a fact gets the features it states,
    cancel events share ``n_cancels``; features whose fact is not in the text stay unassigned."""
    out = np.zeros(len(segments))
    by_kind: dict[str, list[int]] = {}
    for i, s in enumerate(segments):
        if s.sid.startswith("fact:"):
            out[i] = float(shap[list(FACT_FEATURES.get(s.sid.removeprefix("fact:"), ()))].sum())
        else:
            by_kind.setdefault(s.kind, []).append(i)
    for kind, columns in EVENT_FEATURES.items():
        idx = by_kind.get(kind, [])
        for i in idx:
            out[i] = float(shap[list(columns)].sum()) / len(idx)
    return out


def _stack_attributions(scorer: Scorer, customers: list[ScoredCustomer]
                        ) -> list[list[Attribution]]:
    stack = scorer.model.served
    weights = stack.weights
    feats = pd.DataFrame([c.features for c in customers]).reset_index(drop=True)
    per_feature, aggregate_z = feature_logodds(stack, feats)
    enc_logits: list[np.ndarray | None] = [None] * len(customers)
    if "encoder" in weights:
        rows, owner = [], []
        for n, c in enumerate(customers):
            seg = c.serialized.segments
            texts = [c.serialized.text, *(c.serialized.without({s.sid}) for s in seg)]
            rows += [(n, t) for t in texts]
            owner.append(len(texts))
        frame = feats.iloc[[n for n, _ in rows]].reset_index(drop=True).assign(
            customer_id=[customers[n].customer_id for n, _ in rows], text=[t for _, t in rows])
        logits = stack.bases["encoder"].predict_logits(frame)
        start = 0
        for n in range(len(customers)):
            enc_logits[n] = logits[start:start + owner[n]]
            start += owner[n]
    out = []
    for n, c in enumerate(customers):
        seg = c.serialized.segments
        z = stack.bias + float(aggregate_z[n])
        c_log = _credit(seg, per_feature.iloc[n])
        enc = enc_logits[n]
        if enc is not None:
            z += weights["encoder"] * float(enc[0])
            c_log = c_log + weights["encoder"] * (float(enc[0]) - enc[1:])
        p = float(_sigmoid(z))
        contrib = p - _sigmoid(z - c_log)
        out.append([Attribution(s.sid, s.kind, s.text, s.days_ago, float(v))
                    for s, v in zip(seg, contrib)])
    return out


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
    reference: bool = False  # removed facts also reset their aggregates

    @property
    def passes(self) -> bool:
        """Top segments lower the risk, and at least twice as much as random ones do."""
        return self.mean_drop_top > 0 and self.mean_drop_top >= 2 * max(self.mean_drop_random, 0)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"n_customers": self.n_customers, "k": self.k,
                "mean_drop_top": self.mean_drop_top, "mean_drop_random": self.mean_drop_random,
                "ratio": self.ratio, "reference": self.reference, "passes": self.passes}


def faithfulness(scorer: Scorer, customers: list[ScoredCustomer], k: int = 3,
                 seed: int = 0, reference: pd.Series | None = None,
                 method: Callable[[Scorer, list[ScoredCustomer]], list[list[Attribution]]]
                 | None = None) -> Faithfulness:
    """Deletion test over customers with more than k segments. ``reference``: aggregates a
    removed fact is reset to (e.g. the medians of the customers scored); ``method``: the
    attributions tested (default ``attribute_many``; ``occlusion_many`` for the old figure)."""
    method = method or attribute_many
    rng = np.random.default_rng(seed)
    tested = [c for c in customers if len(c.serialized.segments) > k]
    if not tested:
        raise ValueError(f"no customer has more than {k} segments to test")
    requests = []
    for scored, attrs in zip(tested, method(scorer, tested)):
        segments = scored.serialized.segments
        top_k = {a.sid for a in sorted(attrs, key=lambda a: -a.contribution)[:k]}
        random_k = {segments[i].sid for i in rng.choice(len(segments), size=k, replace=False)}
        requests.append((scored, [top_k, random_k]))
    drops_top, drops_random = [], []
    variants = scorer.variants_many(requests, reference=reference)
    for (scored, _), (p_top, p_random) in zip(requests, variants):
        drops_top.append(scored.probability - p_top)
        drops_random.append(scored.probability - p_random)
    top_mean, random_mean = float(np.mean(drops_top)), float(np.mean(drops_random))
    ratio = top_mean / random_mean if random_mean > 0 else float("inf")
    return Faithfulness(len(drops_top), k, top_mean, random_mean, ratio, reference is not None)
