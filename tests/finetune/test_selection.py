"""The served model is chosen on validation among the stacks of the bases, with no base scoring
a row whose answer it learnt; its parts save, load and decompose exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finetune.baselines import BGNBDBaseline, LightGBMBaseline, LogRegBaseline
from finetune.churn_models import StackKind
from finetune.evaluate import EvaluateConfig, fit_models, prepare
from finetune.labels import ChurnDefinition, labels_end_by
from finetune.sampling import cap_customers
from finetune.selection import (
    StackData,
    candidates,
    choose_inputs,
    stack_data,
)

HORIZON = 60


@pytest.fixture(scope="module")
def parts(synthetic):
    events, _ = synthetic
    config = EvaluateConfig(definition=ChurnDefinition(horizon=HORIZON),
                            models=("lightgbm", "logreg", "bgnbd"), train_window="all")
    parts, _ = prepare(events, config, lambda _m: None)
    return parts


@pytest.fixture(scope="module")
def bases(parts):
    fit, val = parts["fit"], parts["val"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    return {"lightgbm": LightGBMBaseline(horizon=HORIZON).fit(fit, y, val, y_val),
            "logreg": LogRegBaseline().fit(fit, y, val, y_val),
            "bgnbd": BGNBDBaseline(horizon=HORIZON).fit(fit, y)}


def test_logistic_regression_written_out_is_the_fitted_pipeline(parts, bases):
    """The served stack stores logistic regression as numbers and attributes it by its terms:
    both must be the pipeline that was fitted, missing values included."""
    test = parts["test"].copy()
    test.loc[test.index[:20], "gap_mean"] = np.nan  # one-order customers have no gap
    form = bases["logreg"].linear()
    np.testing.assert_allclose(form.predict_proba(test), bases["logreg"].predict_proba(test),
                               atol=1e-10)
    again = type(form).from_dict(form.to_dict())
    terms = again.contributions(test)
    p = bases["logreg"].predict_proba(test)
    np.testing.assert_allclose(terms.sum(axis=1), np.log(p / (1 - p)), atol=1e-8)


def test_bgnbd_shares_sum_to_its_logit_and_silence_raises_it(parts, bases):
    test = parts["test"]
    model = bases["bgnbd"]
    shares = model.contributions(test)
    p = model.predict_proba(test)
    np.testing.assert_allclose(shares.sum(axis=1), np.log(p / (1 - p)), atol=1e-8)
    quiet = test.assign(recency_days=test["recency_days"] + 200)
    assert (model.contributions(quiet)["recency_days"] >= shares["recency_days"] - 1e-12).all()
    back = BGNBDBaseline.from_dict(model.to_dict())
    np.testing.assert_allclose(back.predict_proba(test), p)


def test_selection_scores_purged_refits_on_validation_only(parts, bases):
    """The bases that learn from labels are refitted for the choice on fit cutoffs whose label
    window ends before validation; the test part is never read."""
    fit, val = parts["fit"], parts["val"]
    data = stack_data(bases, fit, val, np.ones(len(fit), bool), None, HORIZON)
    assert data.info["selection_purged"]
    purged = labels_end_by(fit["cutoff"], HORIZON, val["cutoff"].min())
    assert data.info["purged_fit_rows"] == int(purged.sum()) < len(fit)
    assert len(data.y_select) == len(val)
    np.testing.assert_array_equal(data.y_select, val["label"].to_numpy())
    # a purged refit is not the model fitted on every row
    full = np.log(bases["lightgbm"].predict_proba(val) / (1 - bases["lightgbm"].predict_proba(val)))
    assert not np.allclose(data.select["lightgbm"], full)
    # BG/NBD reads no labels: the same scores everywhere
    p = bases["bgnbd"].predict_proba(val)
    np.testing.assert_allclose(data.select["bgnbd"], np.log(p / (1 - p)), atol=1e-9)


def _data(rng, n=4000):
    """LightGBM informative; logistic regression a near copy of it; BG/NBD pure noise."""
    def part(y):
        trees = y * 1.0 + rng.normal(size=n)
        return {"lightgbm": trees, "logreg": trees + 0.05 * rng.normal(size=n),
                "bgnbd": rng.normal(size=n)}

    y, y2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    return StackData(part(y), y, part(y2), y2, {"stack_rows": {"validation": 0,
                                                               "held_out_fit": n}})


def test_the_choice_prefers_fewer_inputs_when_more_add_nothing():
    data = _data(np.random.default_rng(0))
    chosen, info = choose_inputs(data, ["lightgbm", "logreg", "bgnbd"], simpler_within=0.01)
    assert len(chosen) == 1 and "bgnbd" not in chosen
    assert set(info["val_auc"]) == {"+".join(c) for c in candidates(["lightgbm", "logreg",
                                                                      "bgnbd"])}
    assert info["chosen"] in info["reason"]
    # with no tolerance for simplicity the strictly best validation figure wins
    best, info = choose_inputs(data, ["lightgbm", "logreg", "bgnbd"], simpler_within=0.0)
    assert info["val_auc"]["+".join(best)] == max(info["val_auc"].values())


def test_candidates_are_every_subset_in_a_fixed_order():
    assert candidates(["logreg", "lightgbm"]) == [("lightgbm",), ("logreg",),
                                                  ("lightgbm", "logreg")]
    assert len(candidates(["encoder", "lightgbm", "logreg", "bgnbd"])) == 15


def test_capping_drops_whole_customers():
    fit = pd.DataFrame({"customer_id": np.repeat([f"c{i}" for i in range(100)], 5)})
    mask = cap_customers(fit, np.ones(len(fit), bool), 123, seed=1)
    assert 100 <= mask.sum() <= 123
    kept = fit[mask].groupby("customer_id").size()
    assert (kept == 5).all()  # every snapshot of a kept customer, none of a dropped one
    assert cap_customers(fit, np.ones(len(fit), bool), None).all()


def test_evaluate_serves_the_winner_and_it_saves_and_loads(parts, tmp_path):
    """Without the encoder the served model is a stack of the aggregate models; what is saved
    predicts exactly what was evaluated."""
    config = EvaluateConfig(definition=ChurnDefinition(horizon=HORIZON),
                            models=("lightgbm", "logreg", "bgnbd", "served"))
    fitted = fit_models(parts, config, lambda _m: None)
    served = fitted["served"]
    choice = served.params["choice"]
    assert choice["chosen"] == "+".join(served.inputs)
    assert choice["val_auc"][choice["chosen"]] >= max(choice["val_auc"].values()) - 0.001
    assert "encoder" not in served.inputs
    served.save(tmp_path)
    back = StackKind.load(tmp_path, encoder=None)
    np.testing.assert_allclose(back.predict_proba(parts["test"]),
                               served.predict_proba(parts["test"]), atol=1e-9)
    # a set choice is kept as given (the refit passes the backtest's on)
    fixed = fit_models(parts, EvaluateConfig(definition=ChurnDefinition(horizon=HORIZON),
                                             models=("served",),
                                             served_inputs=("logreg", "bgnbd")),
                       lambda _m: None)["served"]
    assert fixed.inputs == ("logreg", "bgnbd") and "was set" in fixed.params["choice"]["reason"]


def test_only_the_snapshots_a_text_model_reads_are_serialized(synthetic):
    """Serialization cost follows what the encoder reads (its sample, the capped stacking rows
    and a capped sample of validation), not customers x cutoffs; every test row is read, and
    fit_models refuses to run on fit rows that were skipped."""
    from finetune.churn_models import encoder_split
    from finetune.evaluate import text_rows
    from finetune.labels import plan_backtest
    from finetune.snapshots import backtest_snapshots

    events, _ = synthetic
    config = EvaluateConfig(definition=ChurnDefinition(horizon=HORIZON),
                            encoder_max_examples=300, stack_max_rows=500,
                            encoder_val_max_rows=100)
    plan = plan_backtest(events, config.definition, step=config.step)
    snaps = backtest_snapshots(events, plan, config.definition)
    rows = text_rows(snaps, config)
    is_fit = (snaps["split"] == "fit").to_numpy()
    is_val = (snaps["split"] == "val").to_numpy()
    assert rows[(snaps["split"] == "test").to_numpy()].all()
    read = snaps[is_val & rows]
    assert 50 < len(read) <= 100 < is_val.sum()
    # whole customers: a customer's every validation row is read, or none is
    val_ids = snaps.loc[is_val, "customer_id"]
    assert val_ids[val_ids.isin(read["customer_id"])].index.isin(read.index).all()
    assert 300 < rows[is_fit].sum() <= 800 < is_fit.sum()
    fit = snaps[is_fit].reset_index(drop=True)
    enc_fit, _ = encoder_split(fit, 300, config.lora.seed)
    assert rows[is_fit][enc_fit.index].all()  # the same draw fit_models makes


def test_the_encoder_scores_fewer_stacking_rows_than_the_aggregate_models_get():
    """Every stacking row costs an encoder pass; without the encoder rows are nearly free."""
    from finetune.evaluate import stack_cap
    from finetune.selection import MAX_ENCODER_STACK_ROWS, MAX_STACK_ROWS

    assert stack_cap(EvaluateConfig(), encoder=True) == MAX_ENCODER_STACK_ROWS < MAX_STACK_ROWS
    assert stack_cap(EvaluateConfig(), encoder=False) == MAX_STACK_ROWS
    assert stack_cap(EvaluateConfig(stack_max_rows=500), encoder=True) == 500
    assert stack_cap(EvaluateConfig(stack_max_rows=None), encoder=True) == MAX_ENCODER_STACK_ROWS
    unlimited = EvaluateConfig(stack_max_rows=None, encoder_stack_max_rows=None)
    assert stack_cap(unlimited, encoder=True) is None


def test_bgnbd_features_are_chosen_on_validation_and_never_see_the_test(parts):
    """Each learned base fits with and without BG/NBD's two outputs and keeps the one that
    validates better; the test split cannot change the choice (it is never passed)."""
    fit, val = parts["fit"], parts["val"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    for model in (LightGBMBaseline(horizon=HORIZON), LogRegBaseline(horizon=HORIZON)):
        model.fit(fit, y, val, y_val)
        tried = model.params["val_auc_by_features"]
        assert set(tried) == {"aggregates", "btyd"}
        winner = "btyd" if model.params["btyd_features"] else "aggregates"
        assert tried[winner] == max(tried.values()) == model.params["val_auc"]
        assert (model.btyd_ is not None) == model.params["btyd_features"]
    off = LogRegBaseline(btyd=False).fit(fit, y, val, y_val)
    assert off.btyd_ is None and "val_auc_by_features" not in off.params
    # BG/NBD's parameters come from the fit rows alone, without labels: same rows, same features.
    a = LogRegBaseline(horizon=HORIZON, btyd=True).fit(fit, y, val, y_val).btyd_
    b = LogRegBaseline(horizon=HORIZON, btyd=True).fit(fit, 1 - y, val, y_val).btyd_
    assert a is not None and b is not None and a.params == b.params


def test_a_stack_reading_bgnbd_features_saves_loads_and_decomposes_exactly(parts, tmp_path):
    from assistant.attributions import feature_logodds
    from finetune.btyd import BTYD_COLUMNS
    from finetune.calibration import logit

    fit, val, test = parts["fit"], parts["val"], parts["test"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    bases = {"lightgbm": LightGBMBaseline(horizon=HORIZON, btyd=True).fit(fit, y, val, y_val),
             "logreg": LogRegBaseline(horizon=HORIZON, btyd=True).fit(fit, y, val, y_val)}
    assert all(set(BTYD_COLUMNS) <= set(m.used_columns) for m in bases.values())
    stack = StackKind(bases=bases, inputs=("lightgbm", "logreg"))
    z = np.column_stack([logit(bases[n].predict_proba(val)) for n in stack.inputs])
    stack.fit_design(z, y_val, {"validation": len(val)})
    stack.save(tmp_path)
    back = StackKind.load(tmp_path, encoder=None)
    np.testing.assert_allclose(back.predict_proba(test), stack.predict_proba(test), atol=1e-9)
    # Attributions: per-feature shares (BG/NBD's credited to recency) rebuild the stack's logit.
    feats = test.reset_index(drop=True)
    per, total = feature_logodds(back, feats)
    assert not set(BTYD_COLUMNS) & set(per.columns)
    p = back.predict_proba(feats)
    np.testing.assert_allclose(back.bias + total, np.log(p / (1 - p)), atol=1e-6)
    plain = StackKind(bases={n: type(m)(horizon=HORIZON, btyd=False).fit(fit, y, val, y_val)
                             for n, m in bases.items()}, inputs=("lightgbm", "logreg"))
    plain.fit_design(np.column_stack([logit(plain.bases[n].predict_proba(val))
                                      for n in plain.inputs]), y_val, {"validation": len(val)})
    moved = (per["recency_days"] - feature_logodds(plain, feats)[0]["recency_days"]).abs()
    assert moved.mean() > 1e-3  # the recency fact carries what BG/NBD's outputs add
