"""Model choice on validation only: the training window, the plain-LightGBM guard, and rolling
origins that never let a training label window reach the test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finetune.baselines import LightGBMBaseline, LightGBMPlain
from finetune.evaluate import EvaluateConfig, evaluate_origins, origin_events, prepare
from finetune.labels import DAY, ChurnDefinition, data_bounds
from finetune.window import apply_window, choose_window

CONFIG = {"definition": ChurnDefinition(horizon=60), "step": 30,
              "models": ("lightgbm", "lightgbm_plain", "logreg")}


@pytest.fixture(scope="module")
def parts(synthetic):
    events, _ = synthetic
    return prepare(events, EvaluateConfig(**CONFIG, train_window="all"), lambda _m: None)[0]


def test_window_is_chosen_without_the_test(parts):
    fit, val = parts["fit"], parts["val"]
    choice = choose_window(fit, val, horizon=60)
    # Deterministic, and a function of fit and validation alone (the test part is no input).
    assert choose_window(fit, val, horizon=60) == choice
    assert choice.val_auc and choice.available == fit["cutoff"].nunique()
    # The probe never learns from a cutoff whose labels reach into validation.
    pool = [c for c in sorted(fit["cutoff"].unique()) if c + 60 * DAY <= val["cutoff"].min()]
    assert len(choice.val_auc) <= len(pool)


def test_window_follows_validation(parts):
    """The choice is the widest window within tolerance of the best validation score."""
    fit, val = parts["fit"], parts["val"]
    choice = choose_window(fit, val, horizon=60, tolerance=0.0)
    scores = {k: v for k, v in choice.val_auc.items()}
    best = max(scores, key=scores.get)
    expected = None if best == "all" else int(best)
    assert choice.n_cutoffs == expected
    kept = apply_window(fit, choice.n_cutoffs)
    assert kept["cutoff"].nunique() == (choice.n_cutoffs or fit["cutoff"].nunique())
    assert kept["cutoff"].min() >= fit["cutoff"].min()


def test_prepare_records_the_window_and_trims_fit(synthetic):
    events, _ = synthetic
    parts, plan = prepare(events, EvaluateConfig(**CONFIG, train_window=2), lambda _m: None)
    assert parts["fit"]["cutoff"].nunique() == 2 and len(plan.fit_cutoffs) == 2
    assert plan.to_dict()["window"]["n_cutoffs"] == 2
    parts, plan = prepare(events, EvaluateConfig(**CONFIG), lambda _m: None)
    assert "window" in plan.to_dict() and plan.window["reason"]


def test_tuned_lightgbm_never_validates_below_plain(parts):
    fit, val = parts["fit"], parts["val"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    plain = LightGBMPlain().fit(fit, y, val, y_val)
    # A grid of poor settings only: the guard still keeps the tuned model at least as good.
    weak = LightGBMBaseline(grid={"num_leaves": (2,), "min_child_samples": (400,),
                                  "learning_rate": (0.001,)}).fit(fit, y, val, y_val)
    assert weak.params["val_auc"] >= plain.params["val_auc"] - 1e-12
    assert weak.params.get("plain") is True
    unguarded = LightGBMBaseline(grid={"num_leaves": (2,), "min_child_samples": (400,),
                                       "learning_rate": (0.001,)}, guard=False).fit(fit, y, val, y_val)
    assert unguarded.params["val_auc"] < plain.params["val_auc"]
    # The chosen plain model is used for cross-fitting too.
    oof = weak.cross_fit(fit, y, fit["customer_id"].to_numpy())
    assert not np.isnan(oof).any()


def test_rolling_origins_never_overlap_their_test_window(synthetic):
    events, _ = synthetic
    config = EvaluateConfig(**{**CONFIG, "models": ("logreg", "recency")})
    result, preds = evaluate_origins(events, config, origins=3)
    assert [r["origin"] for r in result["origins"]] == [0, 1, 2]
    _, end = data_bounds(events)
    tests = [pd.Timestamp(r["test_cutoff"], tz="UTC") for r in result["origins"]]
    assert tests == sorted(tests, reverse=True) and len(set(tests)) == 3
    for k, r in enumerate(result["origins"]):
        test = tests[k]
        bt = r["backtest"]
        train = [pd.Timestamp(c, tz="UTC") for c in bt["fit_cutoffs"] + bt["val_cutoffs"]]
        # Every training label window ends by the test cutoff; the test window ends by the
        # origin's own data end, about 30 days per origin before the data's.
        assert max(train) + 60 * DAY <= test
        assert test + 60 * DAY <= end - k * 30 * DAY
    assert set(result["summary"]["models"]) == {"logreg", "recency"}
    assert len(result["summary"]["winner_by_origin"]) == 3
    assert set(preds["origin"]) == {0, 1, 2}


def test_an_origin_cannot_read_what_came_after_it(synthetic):
    events, _ = synthetic
    cut = origin_events(events, 2)
    _, end = data_bounds(events)
    assert cut["ts"].max() < end - 60 * DAY
    # Changing everything after origin 2's end changes nothing for that origin.
    later = events["ts"] >= cut["ts"].max().normalize() + DAY
    altered = events.copy()
    altered.loc[later, "event"] = "visit"
    pd.testing.assert_frame_equal(origin_events(altered, 2), cut)
