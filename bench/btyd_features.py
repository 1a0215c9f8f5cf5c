"""Would BG/NBD's outputs help LightGBM and logistic regression as features? (issue #17)

For each rolling origin, the same snapshots and training window as ``retention evaluate``
(``finetune.evaluate.prepare``): BG/NBD is fitted without labels on the fit snapshots, and its
P(alive) and P(no purchase in the horizon) are added as two columns to every split. LightGBM and
logistic regression are then fitted with and without them, tuned on validation as usual.
Both variants are forced (``btyd=False`` / ``True``); ``retention evaluate`` lets each model
choose on validation. This measures what the choice is between.

Prints one JSON line per origin and a summary: validation and test ROC-AUC of each model with
the base features and with the BG/NBD features, and BG/NBD alone on test.

    .venv/bin/python bench/btyd_features.py --events retail.parquet [--origins 3]
    .venv/bin/python bench/btyd_features.py --events amazon.parquet --activity review --min-prior 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.baselines import LightGBMBaseline, LogRegBaseline
from finetune.btyd import BTYDFeatures
from finetune.evaluate import EvaluateConfig, origin_events, prepare
from finetune.labels import ChurnDefinition
from finetune.loaders import load_events


def one_origin(events: pd.DataFrame, definition: ChurnDefinition, origin: int) -> dict:
    config = EvaluateConfig(definition=definition, models=("lightgbm", "logreg"))
    parts, _ = prepare(origin_events(events, origin), config, lambda _m: None)
    fit, val, test = parts["fit"], parts["val"], parts["test"]
    row: dict = {"origin": origin, "test_cutoff": str(pd.Timestamp(test["cutoff"].iloc[0]).date())}
    for tag, btyd in (("base", False), ("btyd", True)):  # forced either way: no choice here
        for name, cls in (("lightgbm", LightGBMBaseline), ("logreg", LogRegBaseline)):
            model = cls(horizon=float(definition.horizon), btyd=btyd).fit(
                fit, fit["label"].to_numpy(), val, val["label"].to_numpy())
            for split, frame in (("val", val), ("test", test)):
                row[f"{name}_{tag}_{split}"] = round(float(
                    roc_auc_score(frame["label"], model.predict_proba(frame))), 4)
    quiet = BTYDFeatures.fit(fit, definition.horizon).add(test)["btyd_quiet"]
    row["bgnbd_alone_test"] = round(float(roc_auc_score(test["label"], quiet)), 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--origins", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--activity", default="order", help="comma-separated activity events")
    ap.add_argument("--min-prior", type=int, default=1)
    args = ap.parse_args()
    definition = ChurnDefinition(horizon=args.horizon, min_prior=args.min_prior,
                                 activity_events=tuple(args.activity.split(",")))
    events, _ = load_events(args.events)
    rows = []
    for k in range(args.origins):
        rows.append(one_origin(events, definition, k))
        print(json.dumps(rows[-1]), flush=True)
    keys = [k for k in rows[0] if k not in ("origin", "test_cutoff")]
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
    gain = {f"{m}_{s}": round(mean[f"{m}_btyd_{s}"] - mean[f"{m}_base_{s}"], 4)
            for m in ("lightgbm", "logreg") for s in ("val", "test")}
    print(json.dumps({"events": str(args.events), "origins": args.origins, "mean": mean,
                      "gain_from_btyd_features": gain}))


if __name__ == "__main__":
    main()
