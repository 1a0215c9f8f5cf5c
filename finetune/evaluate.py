"""Run the backtest protocol end to end and collect every model's test metrics in one object.

Later model kinds (encoder, hybrid) register themselves in ``MODEL_KINDS`` with the same
``fit``/``predict_proba`` contract, so ``retention evaluate`` compares them all on equal terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finetune.baselines import BASELINES
from finetune.labels import ChurnDefinition, plan_backtest
from finetune.metrics import best_f1_threshold, evaluate_predictions
from finetune.snapshots import backtest_snapshots

MODEL_KINDS: dict[str, Callable[[], Any]] = dict(BASELINES)


@dataclass
class EvaluateConfig:
    definition: ChurnDefinition = field(default_factory=ChurnDefinition)
    step: int = 30
    n_val: int = 1
    max_train_cutoffs: int | None = None
    models: tuple[str, ...] = ("lightgbm", "logreg", "recency")


def evaluate(events: pd.DataFrame, config: EvaluateConfig, dataset: str = "events",
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train each model on fit snapshots, pick its F1 threshold on validation, score the test."""
    unknown = [m for m in config.models if m not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model kind {unknown[0]!r}; known: {', '.join(MODEL_KINDS)}")
    note = progress or (lambda _msg: None)
    definition = config.definition
    plan = plan_backtest(events, definition, step=config.step, n_val=config.n_val,
                         max_train_cutoffs=config.max_train_cutoffs)
    snaps = backtest_snapshots(events, plan, definition,
                               on_cutoff=lambda c: note(f"snapshot {c.date()}"))
    parts = {name: snaps[snaps["split"] == name] for name in ("fit", "val", "test")}
    for name, part in parts.items():
        if part.empty or part["label"].nunique() < 2:
            raise ValueError(f"the {name} snapshots have {len(part)} customers and "
                             f"{part['label'].nunique()} label value(s): need both churners and "
                             "stayers; check the horizon, lookback and activity events")
    y = {name: part["label"].to_numpy() for name, part in parts.items()}
    result: dict[str, Any] = {
        "dataset": dataset,
        "horizon": definition.horizon,
        "test_cutoff": str(plan.test_cutoff.date()),
        "n_train": int(len(parts["fit"]) + len(parts["val"])),
        "n_test": int(len(parts["test"])),
        "test_churn_rate": float(np.mean(y["test"])),
        "n_fit": int(len(parts["fit"])),
        "n_val": int(len(parts["val"])),
        "definition": definition.to_dict(),
        "backtest": plan.to_dict(),
        "notes": plan.notes,
        "models": {},
    }
    for name in config.models:
        note(f"fitting {name}")
        model = MODEL_KINDS[name]()
        model.fit(parts["fit"], y["fit"], parts["val"], y["val"])
        threshold = best_f1_threshold(y["val"], model.predict_proba(parts["val"]))
        metrics = evaluate_predictions(y["test"], model.predict_proba(parts["test"]), threshold)
        params = getattr(model, "params", None)
        if params:
            metrics["params"] = params
        result["models"][name] = metrics
    return result
