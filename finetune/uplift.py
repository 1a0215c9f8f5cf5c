"""What worked: per-action uplift with intervals, per-customer uplift, and the policy it implies.

Causal claims come only from randomised assignments: the ``holdout`` arm and actions assigned at
random (``source == "random"``). Actions agents chose themselves are confounded (agents pick the
customers they expect to save), so they are reported apart, marked as not causal, with a
propensity-weighted estimate beside the naive one.

Per customer, an S-learner (one LightGBM outcome model for all arms) on the point-in-time
features estimates each measured action's uplift; the policy takes the action with the best
expected gain (uplift x what a kept customer is worth - its cost) where it beats the playbook's
own choice clearly (beyond the estimate's spread), with ``none`` a legitimate answer: customers
who stay anyway, or whom contact puts off. The Qini coefficient comes from causalml.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from finetune.actions import HOLDOUT, action_cutoffs, action_outcomes
from finetune.features import FEATURE_COLUMNS, compute_features
from finetune.labels import ChurnDefinition, eligible_customers

NONE = "none"
Z95 = 1.959963984540054
log = logging.getLogger("retention.uplift")


@dataclass
class UpliftConfig:
    min_sample: int = 200  # per arm (action and holdout) before an action counts as measured
    value_per_customer: float = 100.0  # what keeping one customer is worth, in the cost's unit
    test_share: float = 0.3  # customers held out for the Qini coefficient and the policy value
    folds: int = 5  # models on 4/5 of the customers each: the spread of their estimates
    pessimism: float = 2.0  # depart from the playbook only by this many spreads
    seed: int = 0
    n_estimators: int = 600  # the pooled outcome model (PooledSLearner)
    learning_rate: float = 0.03
    num_leaves: int = 8
    min_child_samples: int = 50


def experiment_frame(events: pd.DataFrame, actions: pd.DataFrame, definition: ChurnDefinition,
                     data_end: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per action with its outcome and the customer's features at the action's day.

    Rows whose horizon the data do not cover yet are dropped (their outcome is pending).
    """
    frame = actions.reset_index(drop=True).copy()
    frame["retained"] = action_outcomes(events, frame, definition, data_end).to_numpy()
    frame["cutoff"] = action_cutoffs(frame)
    frame = frame[frame["retained"].notna()].reset_index(drop=True)
    parts = []
    for cutoff, group in frame.groupby("cutoff", sort=True):
        ids = pd.Index(group["customer_id"].unique(), dtype="string")
        feats = compute_features(events, cutoff, ids, definition)
        parts.append(group.join(feats, on="customer_id"))
    if not parts:
        return frame.assign(**{c: pd.Series(dtype="float64") for c in FEATURE_COLUMNS})
    return pd.concat(parts).sort_index()


def test_mask(customer_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """Held-out customers, by a stable hash of the id (the same customers every run)."""
    def bucket(cid: str) -> float:
        digest = hashlib.sha256(f"{seed}:{cid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
    return np.array([bucket(c) < share for c in customer_ids.astype(str)], dtype=bool)


def folds(customer_ids: pd.Series, k: int, seed: int) -> np.ndarray:
    """Fold 0..k-1 of each row, by a stable hash of the customer (all their rows together)."""
    def bucket(cid: str) -> int:
        digest = hashlib.sha256(f"fold:{seed}:{cid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % k
    return np.array([bucket(c) for c in customer_ids.astype(str)], dtype=int)


def _diff_ci(y1: np.ndarray, y0: np.ndarray) -> tuple[float, float, float]:
    """Difference in retained share with a 95% Wald interval (each share continuity-bounded)."""
    p1, p0 = y1.mean(), y0.mean()
    se = math.sqrt(max(p1 * (1 - p1), 0.25 / len(y1)) / len(y1)
                   + max(p0 * (1 - p0), 0.25 / len(y0)) / len(y0))
    d = p1 - p0
    return float(d), float(d - Z95 * se), float(d + Z95 * se)


def _ipw(frame: pd.DataFrame, treated: np.ndarray, control: np.ndarray) -> tuple[float, float,
                                                                                     float]:
    """Propensity-weighted (Hajek) difference, treated vs control, on the features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    both = treated | control
    x = frame.loc[both, list(FEATURE_COLUMNS)].fillna(-1.0).to_numpy()
    w = treated[both].astype(int)
    y = frame.loc[both, "retained"].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5)).fit(x, w)
    p = np.clip(model.predict_proba(x)[:, 1], 0.02, 0.98)
    wt1, wt0 = w / p, (1 - w) / (1 - p)
    m1, m0 = (wt1 * y).sum() / wt1.sum(), (wt0 * y).sum() / wt0.sum()
    var = (((wt1 * (y - m1)) ** 2).sum() / wt1.sum() ** 2
           + ((wt0 * (y - m0)) ** 2).sum() / wt0.sum() ** 2)
    d = float(m1 - m0)
    se = math.sqrt(var)
    return d, d - Z95 * se, d + Z95 * se


@dataclass
class ActionEffect:
    """One action against the holdout: what a user reads in the report and in the API."""

    action_id: str
    source: str  # "randomised" or "chosen" (agents' or campaigns' own choice: not causal)
    causal: bool
    n: int
    n_holdout: int
    retained: float
    holdout_retained: float
    uplift: float
    ci_low: float
    ci_high: float
    cost_per_customer: float
    cost_per_kept: float | None  # None when the action keeps nobody more than the holdout
    measured: bool  # n and n_holdout both reach the minimum sample
    method: str
    adjusted: dict | None = None  # propensity-weighted estimate, for chosen actions
    segments: list[dict] = field(default_factory=list)

    def label(self) -> str:
        """How an agent sees it beside a suggested action."""
        if not self.measured or not self.causal:
            return "no measurement yet"
        return (f"measured: {100 * self.uplift:+.1f} points retained, 95% CI "
                f"{100 * self.ci_low:.1f} to {100 * self.ci_high:.1f}, n={self.n:,}")

    def points(self) -> dict[str, float | int]:
        """The figures of ``label`` as numbers (``assistant.schema.Measurement``), rounded as
        ``label`` rounds them so the two never disagree."""
        return {"uplift_points": round(100 * self.uplift, 1),
                "ci_low_points": round(100 * self.ci_low, 1),
                "ci_high_points": round(100 * self.ci_high, 1), "n": int(self.n)}

    def to_dict(self) -> dict:
        return asdict(self)


def action_effects(frame: pd.DataFrame, config: UpliftConfig,
                   segment: pd.Series | None = None) -> list[ActionEffect]:
    """Every action's uplift against the randomised holdout, randomised arms first."""
    is_random = (frame["source"] == "random").to_numpy()
    control = is_random & (frame["action_id"] == HOLDOUT).to_numpy()
    y = frame["retained"].to_numpy()
    cost = frame["cost"].fillna(0.0).to_numpy()
    out: list[ActionEffect] = []
    if control.sum() == 0:
        return out
    y0 = y[control]
    for random_arm in (True, False):
        kinds = frame.loc[(is_random == random_arm) & (frame["action_id"] != HOLDOUT).to_numpy(),
                          "action_id"]
        for action in sorted(kinds.unique()):
            treated = ((frame["action_id"] == action).to_numpy()
                       & (is_random if random_arm else ~is_random))
            d, lo, hi = _diff_ci(y[treated], y0)
            mean_cost = float(cost[treated].mean())
            effect = ActionEffect(
                action_id=action, source="randomised" if random_arm else "chosen",
                causal=random_arm, n=int(treated.sum()), n_holdout=int(control.sum()),
                retained=float(y[treated].mean()), holdout_retained=float(y0.mean()),
                uplift=d, ci_low=lo, ci_high=hi, cost_per_customer=mean_cost,
                cost_per_kept=mean_cost / d if d > 0 else None,
                measured=bool(treated.sum() >= config.min_sample
                              and control.sum() >= config.min_sample),
                method=("randomised against the holdout (difference in retained share, 95% Wald "
                        "interval)" if random_arm else
                        "chosen by agents or campaigns: confounded, NOT causal; the naive "
                        "difference against the holdout, with a propensity-weighted one beside it"))
            if not random_arm and treated.sum() >= 20:
                a, alo, ahi = _ipw(frame, treated, control)
                effect.adjusted = {"uplift": a, "ci_low": alo, "ci_high": ahi,
                                   "method": "inverse propensity weighting on the features"}
            if segment is not None and random_arm:
                for name in sorted(segment[treated | control].dropna().unique()):
                    s = (segment == name).to_numpy()
                    t, c = treated & s, control & s
                    if t.sum() >= config.min_sample // 2 and c.sum() >= config.min_sample // 2:
                        sd, slo, shi = _diff_ci(y[t], y[c])
                        effect.segments.append({"segment": str(name), "n": int(t.sum()),
                                                "n_holdout": int(c.sum()), "uplift": sd,
                                                "ci_low": slo, "ci_high": shi})
            out.append(effect)
    return out


def _lgbm(config: UpliftConfig):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=config.n_estimators, learning_rate=config.learning_rate,
                          num_leaves=config.num_leaves, min_child_samples=config.min_child_samples,
                          subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                          random_state=config.seed, verbose=-1)


def _matrix(features: pd.DataFrame) -> np.ndarray:
    return features[list(FEATURE_COLUMNS)].to_numpy(dtype="float64")


class PooledSLearner:
    """One outcome model for every arm: LightGBM on the features plus the arm as indicators.

    Pooling lets every arm share what predicts retention anyway (most of the signal), so each
    action's few hundred customers only have to teach the model where the action differs; a model
    per arm (a T-learner, or causalml's per-arm S-learner) learns the baseline nine times over
    from a ninth of the data. (Measured on the simulator's campaign, see bench/README.md.)
    """

    def __init__(self, arms: list[str], config: UpliftConfig) -> None:
        self.arms, self.config = arms, config

    def _design(self, x: np.ndarray, arm: np.ndarray) -> np.ndarray:
        onehot = (arm[:, None] == np.array(self.arms)[None, :]).astype("float64")
        return np.hstack([x, onehot])

    def fit(self, x: np.ndarray, arm: np.ndarray, y: np.ndarray) -> PooledSLearner:
        self.model_ = _lgbm(self.config).fit(self._design(x, arm), y)
        return self

    def outcomes(self, x: np.ndarray) -> np.ndarray:
        """P(retained) under each arm (columns in ``arms`` order)."""
        return np.column_stack([
            self.model_.predict_proba(self._design(x, np.full(len(x), a)))[:, 1]
            for a in self.arms])


DefaultPolicy = Callable[[pd.DataFrame, pd.Series], pd.Series]


@dataclass
class UpliftModel:
    """Per-customer uplift of each measured action, and the policy it implies.

    Uplift: a pooled S-learner (``PooledSLearner``) on the point-in-time features, trained on
    the randomised rows (holdout and measured actions). Policy: the playbook's own choice (its
    priority order), replaced by the action with the best expected gain only where that gain
    beats the playbook's by more than ``pessimism`` times the spread of the same estimate across
    models fitted on 4/5 of the customers each (pessimism in offline policy learning: taking the
    arg-max of nine noisy estimates otherwise picks their noise, and on the simulator's campaign
    that lost to the playbook). ``fit`` returns self; fitted attributes end in ``_``.
    """

    config: UpliftConfig = field(default_factory=UpliftConfig)

    def fit(self, frame: pd.DataFrame, default_policy: DefaultPolicy | None = None
            ) -> UpliftModel:
        """``default_policy(features, risk)``: the action the playbook would take for each row
        (``none`` allowed), given the features and the risk (here: 1 - the estimated chance of
        being retained without action); without it the policy starts from ``none``."""
        self.default_policy_ = default_policy
        self.effects_ = action_effects(frame, self.config)
        self.actions_ = [e.action_id for e in self.effects_ if e.causal and e.measured]
        self.arms_ = [HOLDOUT, *self.actions_]
        self.costs_ = {e.action_id: e.cost_per_customer for e in self.effects_ if e.causal}
        rows = ((frame["source"] == "random") & frame["action_id"].isin(self.arms_)).to_numpy()
        data = frame[rows]
        x, y = _matrix(data), data["retained"].to_numpy().astype(int)
        t = data["action_id"].to_numpy().astype(str)
        self.learner_, self.fold_learners_ = None, []
        if not self.actions_ or (t == HOLDOUT).sum() == 0:
            return self
        self.learner_ = PooledSLearner(self.arms_, self.config).fit(x, t, y)
        fold = folds(data["customer_id"], self.config.folds, self.config.seed + 1)
        self.fold_learners_ = [PooledSLearner(self.arms_, self.config).fit(
            x[fold != f], t[fold != f], y[fold != f]) for f in range(self.config.folds)]
        return self

    def _defaults(self, features: pd.DataFrame) -> pd.Series:
        if self.default_policy_ is None:
            return pd.Series(NONE, index=features.index)
        risk = 1.0 - self.baseline(features)
        return self.default_policy_(features, risk).reindex(features.index).fillna(NONE)

    def _cost_vector(self) -> np.ndarray:
        return np.array([0.0, *(self.costs_.get(a, 0.0) for a in self.actions_)])

    def _columns(self, actions: np.ndarray) -> np.ndarray:
        """Arm index of each action; ``none`` and unmeasured actions map to the holdout (0)."""
        return np.array([self.arms_.index(a) if a in self.arms_ else 0 for a in actions],
                        dtype=int)

    def _gains(self, uplift: np.ndarray) -> np.ndarray:
        """Expected gain of each arm (value units): uplift x value - cost; 0 for no action."""
        gain = uplift * self.config.value_per_customer - self._cost_vector()[None, :]
        gain[:, 0] = 0.0
        return gain

    def _choose(self, x: np.ndarray, base: np.ndarray, allowed: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The best expected gain where it beats the default's by ``pessimism`` times the
        spread of the fold models' estimates of that difference; returns (arm, uplift)."""
        mu = self.learner_.outcomes(x)
        gain = self._gains(mu - mu[:, [0]])
        if allowed is not None:
            gain = np.where(allowed, gain, -np.inf)
        best = gain.argmax(axis=1)
        n = np.arange(len(x))
        diffs = []
        for learner in self.fold_learners_:
            out = learner.outcomes(x)
            g = self._gains(out - out[:, [0]])
            diffs.append(g[n, best] - g[n, base])
        spread = np.std(diffs, axis=0)
        lead = gain[n, best] - gain[n, base]
        switch = (lead > 0) & (lead > self.config.pessimism * spread)
        pick = np.where(switch, best, base)
        return pick, (mu - mu[:, [0]])[n, pick]

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Estimated uplift (difference in retention probability) per customer and action."""
        if self.learner_ is None:
            return pd.DataFrame(index=features.index)
        mu = self.learner_.outcomes(_matrix(features))
        return pd.DataFrame(mu[:, 1:] - mu[:, [0]], index=features.index, columns=self.actions_)

    def baseline(self, features: pd.DataFrame) -> pd.Series:
        """Estimated chance of being retained without any action."""
        if self.learner_ is None:
            return pd.Series(np.nan, index=features.index)
        x = _matrix(features)
        return pd.Series(self.learner_.outcomes(x)[:, 0], index=features.index)

    def rules(self) -> list[str]:
        """The policy in words."""
        if self.learner_ is None:
            return ["no measured action: the playbook's priority order"]
        return [(f"the playbook's choice, unless a measured action ({', '.join(self.actions_)}) "
                f"is expected to gain more, net of its cost, by over {self.config.pessimism:g} "
                f"times the spread of {self.config.folds} cross-fitted models' estimates")]

    def recommend(self, features: pd.DataFrame,
                  allowed: dict[str, list[str]] | None = None) -> pd.DataFrame:
        """Per customer (index = customer id): the policy's action, or ``none``, with its
        expected uplift and gain. ``allowed``: the actions that fit each customer (absent:
        every measured action)."""
        if self.learner_ is None:
            picks = (self.default_policy_(features, pd.Series(np.nan, index=features.index))
                     if self.default_policy_ is not None
                     else pd.Series(NONE, index=features.index))
            return pd.DataFrame({"customer_id": features.index, "action_id": picks.to_numpy(),
                                 "expected_uplift": np.nan, "expected_gain": np.nan})
        x = _matrix(features)
        default = self._defaults(features)
        base = self._columns(default.to_numpy())
        mask = None
        if allowed is not None:
            mask = np.array([[k == 0 or a in allowed.get(cid, []) for k, a in
                              enumerate(self.arms_)] for cid in features.index])
        pick, uplift = self._choose(x, base, mask)
        gain = uplift * self.config.value_per_customer - self._cost_vector()[pick]
        actions = [NONE if k == 0 else self.arms_[k] for k in pick]
        d = default.to_numpy()  # an unmeasured default stays as the playbook chose it
        actions = [d[i] if pick[i] == base[i] and d[i] not in self.arms_ else a
                   for i, a in enumerate(actions)]
        return pd.DataFrame({"customer_id": features.index, "action_id": actions,
                             "expected_uplift": uplift, "expected_gain": gain})


def qini(frame: pd.DataFrame, model: UpliftModel) -> dict[str, float]:
    """Normalised Qini coefficient of each measured action's uplift ranking on ``frame``."""
    from causalml.metrics import qini_score

    out: dict[str, float] = {}
    if model.learner_ is None:
        return out
    tau = model.predict(frame)
    for action in model.actions_:
        rows = ((frame["source"] == "random")
                & frame["action_id"].isin([action, HOLDOUT])).to_numpy()
        part = pd.DataFrame({"y": frame.loc[rows, "retained"].to_numpy(),
                             "w": (frame.loc[rows, "action_id"] == action).astype(int).to_numpy(),
                             "model": tau.loc[rows, action].to_numpy()})
        if part["w"].nunique() == 2:
            out[action] = float(qini_score(part, outcome_col="y", treatment_col="w")["model"])
    return out


def policy_value_ipw(frame: pd.DataFrame, chosen: pd.Series) -> float:
    """Share retained under a policy, estimated from the randomised rows (inverse propensity)."""
    rows = (frame["source"] == "random").to_numpy()
    data = frame[rows]
    arm = data["action_id"].replace({HOLDOUT: NONE})
    share = arm.value_counts(normalize=True)
    match = (arm.to_numpy() == chosen[rows].to_numpy())
    weights = match / arm.map(share).to_numpy()
    return float((weights * data["retained"].to_numpy()).sum() / max(weights.sum(), 1e-9))


@dataclass
class UpliftReport:
    effects: list[ActionEffect]
    qini: dict[str, float]
    policy_value: dict[str, float]  # held-out, inverse-propensity estimates
    n_rows: int
    n_test: int
    pending: int  # actions whose horizon is not over yet
    model: UpliftModel

    def to_dict(self) -> dict:
        return {"effects": [e.to_dict() for e in self.effects], "qini": self.qini,
                "policy_value": self.policy_value, "n_rows": self.n_rows,
                "n_test": self.n_test, "pending": self.pending,
                "measured_actions": self.model.actions_,
                "config": asdict(self.model.config)}


def evaluate_uplift(events: pd.DataFrame, actions: pd.DataFrame, definition: ChurnDefinition,
                    config: UpliftConfig | None = None,
                    default_policy: DefaultPolicy | None = None) -> UpliftReport:
    """Effects on all rows; the uplift model fitted on training customers, judged on held-out
    ones (Qini, policy value), then refitted on everyone (the model recommendations use)."""
    config = config or UpliftConfig()
    frame = experiment_frame(events, actions, definition)
    pending = len(actions) - len(frame)
    if frame.empty:
        raise ValueError(f"none of the {len(actions):,} actions has a finished "
                         f"{definition.horizon}-day window in the events yet: nothing to measure")
    test = test_mask(frame["customer_id"], config.test_share, config.seed)
    held = UpliftModel(config).fit(frame[~test], default_policy)
    qini_scores = qini(frame[test], held)
    values: dict[str, float] = {}
    if test.any() and held.actions_:
        test_frame = frame[test]
        feats = test_frame[list(FEATURE_COLUMNS)]
        learned = held.recommend(feats).set_index(test_frame.index)
        values = {NONE: policy_value_ipw(test_frame, pd.Series(NONE, index=test_frame.index)),
                  "learned": policy_value_ipw(test_frame, learned["action_id"])}
        if default_policy is not None:
            values["playbook"] = policy_value_ipw(test_frame, held._defaults(feats))
    final = UpliftModel(config).fit(frame, default_policy)
    effects = final.effects_
    if final.learner_ is not None:  # by segment: the risk without action, in bands
        risk = 1.0 - final.baseline(frame[list(FEATURE_COLUMNS)])
        band = pd.cut(risk, [-0.01, 0.3, 0.6, 1.01], labels=["low risk", "medium risk",
                                                              "high risk"]).astype("string")
        effects = action_effects(frame, config, segment=band)
    return UpliftReport(effects=effects, qini=qini_scores, policy_value=values,
                        n_rows=len(frame), n_test=int(test.sum()), pending=pending, model=final)


def recommendations(model: UpliftModel, events: pd.DataFrame, definition: ChurnDefinition,
                    as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per customer eligible at ``as_of`` (with or without a logged action)."""
    ids = eligible_customers(events, as_of, definition)
    feats = compute_features(events, as_of, ids, definition)
    out = model.recommend(feats).set_index("customer_id")
    out["baseline_retained"] = model.baseline(feats)
    out["as_of"] = as_of.date().isoformat()
    return out.reset_index()
