"""Which rows calibrate the encoder and fit the hybrid's stack: never rows a model was tuned on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.churn_models import (
    MIN_EARLY_STOP,
    MIN_HELD_OUT,
    calibration_rows,
    early_stopping_rows,
    encoder_split,
)


def frames(n_fit: int, n_val: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    fit = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n_fit)],
                        "label": np.arange(n_fit) % 2})
    val = pd.DataFrame({"customer_id": [f"v{i}" for i in range(n_val)],
                        "label": np.arange(n_val) % 2})
    return fit, val


def test_enough_held_out_rows_are_used_alone():
    fit, val = frames(MIN_HELD_OUT + 500)
    held = np.arange(len(fit)) >= 500  # the encoder trained on the first 500
    rows, labels = calibration_rows(fit, val, held)
    assert len(rows) == 1 and rows[0]["customer_id"].tolist() == fit[held]["customer_id"].tolist()
    assert not set(rows[0]["customer_id"]) & set(val["customer_id"])
    np.testing.assert_array_equal(labels[0], fit["label"].to_numpy()[held])


def test_few_held_out_rows_are_pooled_with_validation():
    fit, val = frames(300)
    held = np.arange(300) >= 200
    rows, labels = calibration_rows(fit, val, held)
    assert [len(r) for r in rows] == [100, 50] and rows[1] is val
    assert sum(len(y) for y in labels) == 150


def test_encoder_on_every_fit_row_leaves_validation():
    fit, val = frames(300)
    rows, _ = calibration_rows(fit, val, np.zeros(300, bool))
    assert len(rows) == 1 and rows[0] is val


def snapshots(n_customers: int = 400, seed: int = 0) -> pd.DataFrame:
    """Customers with one to five snapshots, like the fit cutoffs of a backtest."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 6, n_customers)
    ids = np.repeat([f"c{i}" for i in range(n_customers)], per)
    return pd.DataFrame({"customer_id": ids, "label": rng.integers(0, 2, len(ids))})


def test_encoder_split_holds_out_whole_customers():
    fit = snapshots()
    enc, held = encoder_split(fit, 300, seed=0)
    assert len(enc) == 300
    # Leakage check: no calibration row belongs to a customer the encoder trained on.
    assert not set(fit[held]["customer_id"]) & set(enc["customer_id"])
    # At least half the snapshots stay with the encoder's customers; the rest calibrate.
    assert 0 < held.sum() <= len(fit) / 2
    assert set(fit[~held]["customer_id"]) >= set(enc["customer_id"])


def test_encoder_split_large_budget_takes_whole_customers():
    fit = snapshots()
    budget = int(len(fit) * 0.8)
    enc, held = encoder_split(fit, budget, seed=0)
    assert budget <= (~held).sum() < budget + 5  # up to the last customer's other rows
    assert len(enc) == budget
    assert not set(fit[held]["customer_id"]) & set(enc["customer_id"])


def test_encoder_split_is_seeded_and_without_budget_holds_nothing_out():
    fit = snapshots()
    a, held_a = encoder_split(fit, 300, seed=3)
    b, held_b = encoder_split(fit, 300, seed=3)
    c, _ = encoder_split(fit, 300, seed=4)
    assert a.index.equals(b.index) and (held_a == held_b).all()
    assert not a.index.equals(c.index)
    for budget in (None, 0, len(fit), len(fit) + 10):
        enc, held = encoder_split(fit, budget)
        assert len(enc) == len(fit) and not held.any()


def test_early_stopping_uses_customers_the_encoder_did_not_train_on():
    fit, _ = frames(400)
    val = pd.DataFrame({"customer_id": [f"c{i}" for i in range(100)]  # trained on these
                        + [f"new{i}" for i in range(MIN_EARLY_STOP)],
                        "label": np.arange(100 + MIN_EARLY_STOP) % 2})
    stop = early_stopping_rows(fit, val)
    assert stop.sum() == MIN_EARLY_STOP
    assert not set(val["customer_id"][stop]) & set(fit["customer_id"])


def test_early_stopping_keeps_all_validation_when_too_few_are_unseen():
    fit, _ = frames(400)
    ids = [f"c{i}" for i in range(100)] + [f"new{i}" for i in range(MIN_EARLY_STOP - 1)]
    val = pd.DataFrame({"customer_id": ids, "label": np.arange(len(ids)) % 2})
    assert early_stopping_rows(fit, val).all()
    ids.append("new-last")  # enough unseen rows now, but all of them churn
    one_class = pd.DataFrame({"customer_id": ids, "label": [0] * 100 + [1] * MIN_EARLY_STOP})
    assert early_stopping_rows(fit, one_class).all()
    assert early_stopping_rows(fit, one_class.assign(label=np.arange(len(ids)) % 2)).sum() \
        == MIN_EARLY_STOP
