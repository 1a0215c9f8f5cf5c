"""BG/NBD: the fit recovers known parameters, and its outputs behave as the model says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finetune.baselines import BGNBDBaseline
from finetune.btyd import BGNBD, rfm_from_features, simulate

TRUE = {"r": 0.8, "alpha": 30.0, "a": 0.8, "b": 2.5}


@pytest.fixture(scope="module")
def simulated():
    return simulate(4000, T=360.0, seed=3, **TRUE)


def test_fit_recovers_the_parameters_it_was_simulated_with(simulated):
    fitted = BGNBD().fit(*simulated).params_
    assert fitted["converged"]
    # 4,000 customers: the rate parameters within 15%, the dropout ones within 30%.
    assert fitted["r"] == pytest.approx(TRUE["r"], rel=0.15)
    assert fitted["alpha"] == pytest.approx(TRUE["alpha"], rel=0.15)
    assert fitted["a"] == pytest.approx(TRUE["a"], rel=0.3)
    assert fitted["b"] == pytest.approx(TRUE["b"], rel=0.3)


def test_p_alive_falls_with_silence_and_is_one_without_repeat_purchases(simulated):
    model = BGNBD().fit(*simulated)
    # Five repeat purchases, the last one 10, 100 and 300 days into a 360-day life.
    x, T = np.full(3, 5.0), np.full(3, 360.0)
    alive = model.p_alive(x, np.array([350.0, 260.0, 60.0]), T)
    assert alive[0] > alive[1] > alive[2]
    assert model.p_alive(np.zeros(1), np.zeros(1), np.array([100.0]))[0] == 1.0
    none = model.p_no_purchase(x, np.array([350.0, 260.0, 60.0]), T, horizon=90)
    assert np.all((none > 0) & (none < 1)) and none[0] < none[1] < none[2]
    # A longer horizon leaves less chance of no purchase at all.
    assert np.all(model.p_no_purchase(x, np.full(3, 350.0), T, 180)
                  < model.p_no_purchase(x, np.full(3, 350.0), T, 30))


def test_no_purchase_probability_is_calibrated_on_its_own_process():
    """Customers simulated for 360 days, then for 90 more: the predicted chance of no purchase
    in the next 90 days matches the share that made none."""
    rng = np.random.default_rng(5)
    n, T, H = 4000, 360.0, 90.0
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    x, t_x, none_after = np.zeros(n), np.zeros(n), np.ones(n, dtype=bool)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1 / lam[i])
            if t > T + H:
                break
            if t <= T:
                x[i], t_x[i] = x[i] + 1, t
            else:
                none_after[i] = False
                break
            alive = rng.random() >= p[i]
    model = BGNBD().fit(x, t_x, np.full(n, T))
    predicted = model.p_no_purchase(x, t_x, np.full(n, T), H)
    assert abs(predicted.mean() - none_after.mean()) < 0.03


def test_rfm_from_snapshot_features():
    X = pd.DataFrame({"frequency": [1.0, 4.0, 0.0], "recency_days": [10.0, 5.0, np.nan],
                      "gap_mean": [np.nan, 20.0, np.nan]})
    x, t_x, T = rfm_from_features(X)
    np.testing.assert_allclose(x, [0, 3, 0])
    np.testing.assert_allclose(t_x, [0, 60, 0])   # three gaps of 20 days
    np.testing.assert_allclose(T, [10, 65, 0])    # first order 65 days before the cutoff


def test_baseline_ranks_churners_above_chance(synthetic):
    from sklearn.metrics import roc_auc_score

    from finetune.evaluate import EvaluateConfig, prepare

    events, _ = synthetic
    parts, _ = prepare(events, EvaluateConfig(models=("bgnbd",), train_window="all"),
                       lambda _m: None)
    model = BGNBDBaseline(horizon=90).fit(parts["fit"], parts["fit"]["label"].to_numpy())
    p = model.predict_proba(parts["test"])
    assert np.all((p > 0) & (p < 1))
    assert roc_auc_score(parts["test"]["label"], p) > 0.6
