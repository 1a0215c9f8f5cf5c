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
