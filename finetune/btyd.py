"""BG/NBD, the classical buy-till-you-die model of non-contractual churn (Fader, Hardie and Lee,
"Counting Your Customers the Easy Way", Marketing Science 2005).

Each customer buys at a Poisson rate λ ~ Gamma(r, α) while alive, and after each purchase drops
out with probability p ~ Beta(a, b). From a customer's repeat purchases ``x``, the time of the
last one ``t_x`` and their age ``T`` (both from the first purchase), the model gives the chance
they are still alive and the chance of no purchase in the next ``h`` days, which is exactly the
project's inactivity churn label. It needs no labels and no tuning: the anchor any learned model
must beat, and (``BTYDFeatures``) two features a learned model may use.

Why written here rather than imported: ``lifetimes`` is archived (its README sends users to
PyMC-Marketing), and PyMC-Marketing brings PyMC and a PyTensor compiler for what is a
four-parameter maximum-likelihood fit. The likelihood below is the paper's equation (6); the
tests recover known parameters from data simulated under the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln


def rfm_from_features(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T)`` in days from the snapshot aggregates of ``finetune.features``.

    ``frequency`` counts activity events before the cutoff, ``recency_days`` is the age of the
    newest and ``gap_mean`` the mean gap between them, so the first one is
    ``recency + gap_mean * (frequency - 1)`` days old. A customer with no activity yet has
    ``x = t_x = T = 0``.
    """
    n = X["frequency"].fillna(0.0).to_numpy(dtype="float64")
    recency = X["recency_days"].to_numpy(dtype="float64")
    gap = X["gap_mean"].fillna(0.0).to_numpy(dtype="float64")
    x = np.clip(n - 1.0, 0.0, None)
    t_x = np.where(x > 0, gap * x, 0.0)
    T = np.where(np.isnan(recency), 0.0, np.nan_to_num(recency) + t_x)
    return x, t_x, T


def _log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray,
                    T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood, equation (6) of the paper, in log space for stability."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    alive = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    dropped = np.where(
        x > 0,
        betaln(a + 1.0, b + np.maximum(x, 1.0) - 1.0) - betaln(a, b)
        - (r + x) * np.log(alpha + t_x),
        -np.inf)
    return common + np.logaddexp(alive, dropped)


@dataclass
class BGNBD:
    """Maximum-likelihood BG/NBD; ``fit`` returns self, fitted parameters end in ``_``."""

    penalizer: float = 0.0
    params_: dict[str, float] = field(default_factory=dict)

    def fit(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BGNBD:
        x, t_x, T = (np.asarray(v, dtype="float64") for v in (x, t_x, T))
        keep = T > 0
        if keep.sum() < 10:
            raise ValueError(f"BG/NBD needs customers with some history; {int(keep.sum())} have")
        x, t_x, T = x[keep], t_x[keep], T[keep]
        scale = float(np.median(T)) or 1.0  # fit in units of the median age: a better-posed start

        def nll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = _log_likelihood(params, x, t_x / scale, T / scale)
            return float(-ll.mean() + self.penalizer * np.sum(params ** 2))

        start = np.log([1.0, 1.0, 1.0, 1.0])
        res = minimize(nll, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
        r, alpha, a, b = np.exp(res.x)
        self.params_ = {"r": float(r), "alpha": float(alpha * scale), "a": float(a),
                        "b": float(b), "converged": bool(res.success),
                        "log_likelihood": float(-res.fun * len(x))}
        return self

    def _unpack(self) -> tuple[float, float, float, float]:
        if not self.params_:
            raise RuntimeError("fit first")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T): 1 for a customer with no repeat purchase, since in
        BG/NBD a customer can only drop out right after a purchase."""
        r, alpha, a, b = self._unpack()
        x, t_x, T = (np.asarray(v, dtype="float64") for v in (x, t_x, T))
        log_ratio = (np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0)
                     + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        odds = np.where(x > 0, np.exp(np.clip(log_ratio, -700, 700)), 0.0)
        return 1.0 / (1.0 + odds)

    def p_no_purchase(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                      horizon: float) -> np.ndarray:
        """P(no purchase in ``(T, T + horizon]``): dead, or alive and the posterior rate
        Gamma(r + x, α + T) gives no event (a customer drops out only after buying)."""
        r, alpha, _, _ = self._unpack()
        x, T = np.asarray(x, dtype="float64"), np.asarray(T, dtype="float64")
        alive = self.p_alive(x, t_x, T)
        quiet = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + horizon)))
        return (1.0 - alive) + alive * quiet


# BG/NBD's outputs as two features for the learned models: P(alive) and P(no purchase in the
# horizon). ``btyd_quiet`` is the bgnbd baseline's own prediction.
BTYD_COLUMNS: tuple[str, ...] = ("btyd_alive", "btyd_quiet")
RFM_COLUMNS: tuple[str, ...] = ("frequency", "recency_days", "gap_mean")


@dataclass
class BTYDFeatures:
    """A BG/NBD fitted without labels on the training snapshots, turned into ``BTYD_COLUMNS``.

    Point in time by construction: each row's features come from that row's own aggregates
    (counted before its cutoff) and parameters fitted on training rows only. Whether a model
    uses them is chosen on validation (``finetune.baselines``)."""

    params: dict[str, float]
    horizon: float

    @classmethod
    def fit(cls, X: pd.DataFrame, horizon: float) -> BTYDFeatures:
        model = BGNBD().fit(*rfm_from_features(X))
        return cls({k: model.params_[k] for k in ("r", "alpha", "a", "b")}, float(horizon))

    def add(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with the two columns (a copy; ``X`` is unchanged)."""
        model = BGNBD(params_=dict(self.params))
        x, t_x, T = rfm_from_features(X)
        return X.assign(btyd_alive=model.p_alive(x, t_x, T),
                        btyd_quiet=model.p_no_purchase(x, t_x, T, self.horizon))

    def to_dict(self) -> dict:
        return {**self.params, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, data: dict) -> BTYDFeatures:
        return cls({k: float(data[k]) for k in ("r", "alpha", "a", "b")}, float(data["horizon"]))


def simulate(n: int, r: float, alpha: float, a: float, b: float, T: float,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers drawn from the BG/NBD process, observed for ``T`` days from their first
    purchase: ``(x, t_x, T)``. Used by the tests to check that the fit recovers the truth."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    xs, txs = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, count, last = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > T:
                break
            count, last = count + 1, t
            if rng.random() < p[i]:
                break
        xs[i], txs[i] = count, last
    return xs, txs, np.full(n, float(T))


__all__ = ["BGNBD", "BTYD_COLUMNS", "RFM_COLUMNS", "BTYDFeatures", "rfm_from_features", "simulate"]
