"""The demo generator: seeded, bilingual, and learnable but not trivially."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.evaluate import EvaluateConfig, evaluate
from finetune.synthetic import SyntheticConfig, generate


def test_same_seed_same_data_other_seed_other_data():
    a, _ = generate(SyntheticConfig(customers=60, seed=1, days=300))
    b, _ = generate(SyntheticConfig(customers=60, seed=1, days=300))
    c, _ = generate(SyntheticConfig(customers=60, seed=2, days=300))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_realistic_mix(synthetic):
    events, customers = synthetic
    kinds = set(events["event"].astype(str))
    assert {"order", "return", "review", "ticket", "visit", "cancel"} <= kinds
    text = events["text"].dropna()
    assert text.str.contains(r"[\u4e00-\u9fff]").any() and text.str.contains("[a-z]").any()
    assert set(customers["language"]) == {"en", "zh"}
    reviews = events[events["event"] == "review"]
    assert reviews["rating"].between(1, 5).all() and reviews["rating"].nunique() == 5
    assert (events.loc[events["event"] == "order", "amount"] > 0).all()


def test_models_learn_something_real_but_not_everything(synthetic):
    events, _ = synthetic
    result = evaluate(events, EvaluateConfig(models=("lightgbm", "recency")))
    auc = {k: v["auc"] for k, v in result["models"].items()}
    assert 0.2 < result["test_churn_rate"] < 0.6
    assert auc["lightgbm"] > 0.75, auc
    assert auc["lightgbm"] < 0.97, auc  # not trivially separable
    assert auc["lightgbm"] > auc["recency"] - 0.01


def test_text_carries_signal_of_its_own(synthetic):
    """Some leavers say so in words: those phrases are more common before churn."""
    events, _ = synthetic
    said = events["text"].fillna("").str.contains("won't be back|不会再来|last order|最后一次")
    assert 0 < said.sum() < 0.2 * events["text"].notna().sum()
    assert np.isfinite(said.mean())
