"""Which rows calibrate the encoder and fit the hybrid's stack: never rows a model was tuned on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.churn_models import MIN_HELD_OUT, calibration_rows


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
