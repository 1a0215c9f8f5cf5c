"""What does capping LightGBM's tuning rows save, and what does it cost? (#17)

On one seeded synthetic log of N customers (``retention demo-data``, not timed), the backtest's
snapshots are built as ``retention evaluate`` builds them, then LightGBM (the project's tuned
baseline: grid, plain guard, BG/NBD feature choice) is fitted twice, each in its own process:
tuned on every purged fit row, and on at most ``MAX_TUNING_ROWS`` of them (whole customers);
both final models learn from every fit row. Prints one JSON object: per variant, the seconds of
the fit, the process's peak RSS and its RSS before the fit, validation and test ROC-AUC, the rows
tuned on and the chosen parameters; and the capped run's ratios to the uncapped one.

    .venv/bin/python bench/tuning_cap.py --customers 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(events_path: str, cap: int | None) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from finetune.baselines import LightGBMBaseline
    from finetune.evaluate import EvaluateConfig, prepare

    events = pd.read_parquet(events_path)
    config = EvaluateConfig(models=("lightgbm",), train_window="all")
    parts, _ = prepare(events, config, lambda _m: None)
    fit, val, test = parts["fit"], parts["val"], parts["test"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    started = time.perf_counter()
    model = LightGBMBaseline(horizon=config.definition.horizon, max_tuning_rows=cap).fit(
        fit, fit["label"].to_numpy(), val, val["label"].to_numpy())
    seconds = time.perf_counter() - started
    return {"max_tuning_rows": cap, "fit_rows": len(fit), "test_customers": len(test),
            "fit_seconds": round(seconds, 1),
            "rss_before_fit_gb": round(before, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
            "val_auc": round(float(roc_auc_score(val["label"], model.predict_proba(val))), 4),
            "test_auc": round(float(roc_auc_score(test["label"], model.predict_proba(test))), 4),
            "params": model.params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cap", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.cap or None)))
        return
    from finetune.baselines import MAX_TUNING_ROWS

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        subprocess.run([str(ROOT / ".venv/bin/retention"), "demo-data", "--customers",
                        str(args.customers), "-o", str(data)], check=True, capture_output=True)
        runs = {}
        for name, cap in (("uncapped", 0), ("capped", MAX_TUNING_ROWS)):
            out = subprocess.run([sys.executable, __file__, "--child",
                                  str(data / "events.parquet"), "--cap", str(cap)],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    full, capped = runs["uncapped"], runs["capped"]
    print(json.dumps({"bench": "tuning_cap", "cpus": os.cpu_count(), "customers": args.customers,
                      **runs, "fit_seconds_ratio": round(capped["fit_seconds"]
                                                         / full["fit_seconds"], 3),
                      "test_auc_change": round(capped["test_auc"] - full["test_auc"], 4)}))


if __name__ == "__main__":
    main()
