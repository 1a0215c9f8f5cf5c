"""What does each speed choice of the churn model cost in time, memory and ROC-AUC?

Runs the real ``retention evaluate`` (full backtest: snapshots, serialization, LightGBM, LoRA
encoder, hybrid, test metrics) once per choice, each in its own process, and prints one JSON object
with every run's wall time, peak resident memory and test metrics, so a choice is judged by
what it costs in AUC against what it saves in time.

    .venv/bin/python bench/train_speed.py --events retail.parquet \
        [--choice practical --choice fewer_snapshots ...] [--keep-predictions DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> extra options of `retention evaluate` (horizon, models and events are common).
CHOICES: dict[str, list[str]] = {
    "practical": ["--max-tokens", "128", "--epochs", "1", "--encoder-max-examples", "3000"],
    "fewer_snapshots": ["--max-tokens", "128", "--epochs", "1", "--encoder-max-examples", "1000"],
    "shorter_budget": ["--max-tokens", "64", "--epochs", "1", "--encoder-max-examples", "3000"],
    "more_snapshots": ["--max-tokens", "128", "--epochs", "1", "--encoder-max-examples", "6000"],
    "cli_defaults": ["--max-tokens", "256", "--epochs", "1", "--encoder-max-examples", "3000"],
}


def run_choice(name: str, extra: list[str], events: Path, horizon: int,
               common: list[str], predictions: Path | None = None) -> dict:
    """One evaluate in a child process; wait4 gives that child's own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        keep = ["--predictions", str(predictions)] if predictions else []
        cmd = [str(ROOT / ".venv/bin/retention"), "evaluate", "--events", str(events),
               "--horizon", str(horizon), "--models", "lightgbm,encoder,hybrid", "--json",
               "--out", str(out), *keep, *common, *extra]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0 or not out.exists():
            return {"choice": name, "options": extra, "error": stderr[-2000:]}
        result = json.loads(out.read_text())
    models = result["models"]
    return {
        "choice": name, "options": extra, "seconds": round(seconds, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 2),
        "n_fit": result["n_fit"], "n_test": result["n_test"],
        "auc": {k: round(m["auc"], 4) for k, m in models.items()},
        "auc_ci": {k: [round(v, 4) for v in m["auc_ci"]] for k, m in models.items()},
        "auc_minus_lightgbm_ci": {k: [round(v, 4) for v in m["auc_diff_ci"]]
                                  for k, m in models.items() if "auc_diff_ci" in m},
        "ece": {k: round(m["ece"], 4) for k, m in models.items()},
        "hybrid_minus_lightgbm": round(models["hybrid"]["auc"] - models["lightgbm"]["auc"], 4),
        "encoder_minus_lightgbm": round(models["encoder"]["auc"] - models["lightgbm"]["auc"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--choice", action="append", choices=sorted(CHOICES),
                    help="repeatable; default: practical, fewer_snapshots, shorter_budget")
    ap.add_argument("--common", default="", help="extra options for every run, e.g. "
                    "'--activity review --min-prior 5'")
    ap.add_argument("--keep-predictions", type=Path, default=None,
                    help="write each run's test predictions to DIR/<choice>.parquet (for "
                    "bench/paired_compare.py)")
    args = ap.parse_args()
    names = args.choice or ["practical", "fewer_snapshots", "shorter_budget"]
    runs = []
    for name in names:
        keep = args.keep_predictions / f"{name}.parquet" if args.keep_predictions else None
        runs.append(run_choice(name, CHOICES[name], args.events, args.horizon,
                               args.common.split(), keep))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # partial results as they land
    print(json.dumps({"events": str(args.events), "horizon": args.horizon,
                      "cpu_count": os.cpu_count(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
