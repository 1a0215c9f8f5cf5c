"""The LightGBM baseline's cross-fitted predictions: what the hybrid's stacker is fitted on."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from finetune.baselines import LightGBMBaseline
from finetune.evaluate import EvaluateConfig, prepare


@pytest.fixture(scope="module")
def parts(synthetic):
    events, _ = synthetic
    parts, _ = prepare(events, EvaluateConfig(models=("lightgbm",), max_train_cutoffs=4),
                       lambda _m: None)
    return parts


def test_cross_fit_is_out_of_fold_and_honest(parts):
    fit, val = parts["fit"], parts["val"]
    y = fit["label"].to_numpy()
    trees = LightGBMBaseline().fit(fit, y, val, val["label"].to_numpy())
    oof = trees.cross_fit(fit, y, fit["customer_id"].to_numpy())
    assert oof.shape == (len(fit),) and not np.isnan(oof).any()
    in_sample = trees.predict_proba(fit)
    # Out of fold the trees cannot recall a row's own label: lower AUC than in sample, yet
    # still informative. A stacker fitted on in-sample scores would over-trust the trees.
    assert roc_auc_score(y, oof) < roc_auc_score(y, in_sample) - 0.01
    assert roc_auc_score(y, oof) > 0.6
    again = trees.cross_fit(fit, y, fit["customer_id"].to_numpy())
    np.testing.assert_array_equal(oof, again)  # seeded and deterministic


def test_cross_fit_needs_a_fitted_model(parts):
    fit = parts["fit"]
    with pytest.raises(AssertionError, match="fit first"):
        LightGBMBaseline().cross_fit(fit, fit["label"].to_numpy(), fit["customer_id"].to_numpy())


def test_cross_fitting_fits_only_as_many_models_as_the_wanted_rows_need():
    """Only the stacking rows need out-of-fold scores: each model learns from every row outside
    its fold, the folds split the wanted customers between them (no model learnt a customer it
    scores), and a fold holds at most a fifth of the rows, so 20,000 stacking rows of millions
    cost one fit instead of five."""
    from sklearn.linear_model import LogisticRegression

    from finetune.baselines import MAX_HELD_OUT, _cross_fit

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(500), 4)  # 500 customers, 4 snapshots each
    X = np.column_stack([rng.normal(size=(len(groups), 2)), np.arange(len(groups))])
    y = (X[:, 0] + rng.normal(size=len(groups)) > 0).astype(int)
    learnt: list[set[int]] = []

    class Recording(LogisticRegression):
        def fit(self, X_, y_):
            learnt.append(set(groups[X_[:, -1].astype(int)]))
            return super().fit(X_, y_)

    everyone = set(range(500))
    for share, fits in ((1.0, 5), (0.3, 2), (0.1, 1)):
        learnt.clear()
        rows = groups < int(500 * share)
        oof = _cross_fit(Recording, X, y, groups, 5, rows)
        assert len(learnt) == fits, share
        assert not np.isnan(oof[rows]).any() and np.isnan(oof[~rows]).all()
        held = [everyone - g for g in learnt]
        assert set().union(*held) == set(groups[rows]) and sum(map(len, held)) == len(set(groups[rows]))
        assert all(len(h) <= MAX_HELD_OUT * 500 + 1 for h in held)
    # Every row wanted: the same five folds as before the bound (GroupKFold over all rows).
    from sklearn.model_selection import GroupKFold

    learnt.clear()
    _cross_fit(Recording, X, y, groups, 5)
    assert [everyone - g for g in learnt] == [set(groups[t]) for _, t in
                                             GroupKFold(5).split(X, y, groups)]


def test_lightgbm_tunes_on_a_capped_sample_of_customers_and_learns_from_every_row(parts,
                                                                                 monkeypatch):
    """Past ``max_tuning_rows`` purged rows the grid learns from a sample of whole customers
    (its cost stops growing with the log); the chosen model still learns from every fit row,
    and a cap above the purged rows changes nothing."""
    import lightgbm as lgb

    from finetune.baselines import purged_rows

    fit, val = parts["fit"], parts["val"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    purged = purged_rows(fit, y, val, 90)
    full = LightGBMBaseline(horizon=90, btyd=False).fit(fit, y, val, y_val)
    assert full.params["tuning_rows"] == purged.sum() == len(fit) - full.params["purged_rows"]
    same = LightGBMBaseline(horizon=90, btyd=False, max_tuning_rows=int(purged.sum())).fit(
        fit, y, val, y_val)
    np.testing.assert_array_equal(same.predict_proba(val), full.predict_proba(val))
    capped = LightGBMBaseline(horizon=90, btyd=False, max_tuning_rows=200)
    seen = []
    real_fit = lgb.LGBMClassifier.fit

    def recording_fit(self, X, *args, **kwargs):  # which rows each LightGBM fit learnt from
        seen.append(len(X))
        return real_fit(self, X, *args, **kwargs)

    monkeypatch.setattr(lgb.LGBMClassifier, "fit", recording_fit)
    capped.fit(fit, y, val, y_val)
    assert 0 < capped.params["tuning_rows"] <= 200 < purged.sum()
    assert capped.params["purged_rows"] == full.params["purged_rows"]
    assert set(seen[:-1]) == {capped.params["tuning_rows"]} and seen[-1] == len(fit)
