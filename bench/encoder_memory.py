"""What the encoder's training step and bulk scoring cost in time and memory on CPU, and what the
attention-dropout choice costs in quality. (#17: a 25,000-customer ``retention train`` peaked at
6.8-7.4 GB, most of it while the encoder trained or scored.)

Each variant runs in its own process (peak RSS is per process):

- ``step``: a few LoRA training steps of 16 rows at the token budget (256), with attention
  dropout 0.1 (the checkpoint's own, the default) or 0.0, the batch computed whole (before
  session 31) or in micro-batches of 8 (the default). Reports seconds per 16-row step and the
  peak RSS above the loaded model.
- ``score``: bulk scoring of N rows of varied length (sorted, as ``predict_logits`` walks
  them), batch widths rounded to ``PAD_MULTIPLE`` or not. Reports seconds and peak RSS.
- ``--quality EVENTS``: the encoder backtest (``retention evaluate --models encoder`` at the
  defaults) with attention dropout 0.1 and 0.0: validation ROC-AUC (what a choice may read),
  test ROC-AUC and their paired test difference.

Prints one JSON object.

    .venv/bin/python bench/encoder_memory.py
    .venv/bin/python bench/encoder_memory.py --quality demo/events.parquet
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def step_child(attention_dropout: float, micro: int, steps: int) -> dict:
    import torch

    from finetune.lora import EncoderChurnModel, LoraConfig

    cfg = LoraConfig(attention_dropout=attention_dropout, micro_batch_size=micro)
    model = EncoderChurnModel(cfg)
    model._build()
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(1000, 20000, (cfg.max_tokens - int(k),), generator=gen).tolist()
            for k in torch.randint(0, 16, (cfg.batch_size,), generator=gen)]
    y = torch.randint(0, 2, (cfg.batch_size,), generator=gen).float().numpy()
    params = [p for p in model.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.model.train()
    base = peak_gb()
    start = time.perf_counter()
    for _ in range(steps):  # the fit loop's own step: micro-batches, gradients summed
        model._backward(rows, y, None, loss_fn, torch.device("cpu"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"attention_dropout": attention_dropout, "micro_batch": micro,
            "seconds_per_step": round((time.perf_counter() - start) / steps, 3),
            "peak_rss_gb": round(peak_gb(), 2), "rss_before_gb": round(base, 2),
            "working_gb": round(peak_gb() - base, 2)}


def score_child(pad_multiple: int, n: int) -> dict:
    import numpy as np
    import torch

    from finetune import lora
    from finetune.lora import EncoderChurnModel, LoraConfig

    lora.PAD_MULTIPLE = pad_multiple
    model = EncoderChurnModel(LoraConfig())
    model._build()
    rng = np.random.default_rng(0)
    ids = [rng.integers(1000, 20000, int(k)).tolist() for k in rng.integers(64, 257, n)]
    base = peak_gb()
    start = time.perf_counter()
    model._logits(ids, torch.device("cpu"))
    return {"pad_multiple": pad_multiple, "rows": n,
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(peak_gb(), 2), "rss_before_gb": round(base, 2),
            "working_gb": round(peak_gb() - base, 2)}


def quality(events_path: str) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from finetune.churn_models import rows_for
    from finetune.evaluate import EvaluateConfig, compare_runs, fit_models, prepare, score_models

    events = pd.read_parquet(events_path)
    runs = {}
    for p in (0.1, 0.0):
        config = EvaluateConfig(models=("encoder",))  # 3,000 encoder rows, as the CLI
        config = replace(config, lora=replace(config.lora, attention_dropout=p))
        start = time.perf_counter()
        parts, _ = prepare(events, config, lambda _m: None)
        models = fit_models(parts, config, lambda _m: None)
        seen = rows_for(models["encoder"], parts["val"])  # what a choice may look at
        val_auc = float(roc_auc_score(seen["label"], models["encoder"].predict_proba(seen)))
        metrics, preds = score_models(models, ("encoder",), parts["val"], parts["test"])
        runs[p] = (metrics["encoder"], preds, val_auc, time.perf_counter() - start)
    out = {str(p): {"val_roc_auc": round(v, 4), "test_roc_auc": m["auc"],
                    "test_pr_auc": m.get("pr_auc"), "seconds": round(s)}
           for p, (m, _, v, s) in runs.items()}
    out["paired_test_0.0_minus_0.1"] = compare_runs(runs[0.0][1], runs[0.1][1], "encoder")
    return out


def run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--score-rows", type=int, default=2000)
    ap.add_argument("--quality", metavar="EVENTS", help="also backtest the encoder on this log")
    ap.add_argument("--quality-only", action="store_true", help="skip the memory variants")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (step_child(float(rest[0]), int(rest[1]), args.steps) if kind == "step"
                  else score_child(int(rest[0]), args.score_rows))
        print(json.dumps(result))
        return
    if args.quality and args.quality_only:
        print(json.dumps({"quality": quality(args.quality)}, indent=2))
        return
    variants = ((0.1, 16), (0.1, 8), (0.0, 16), (0.0, 8))  # old, default, then without dropout
    step = [run_child(["step", str(p), str(m)]) for p, m in variants]
    score = [run_child(["score", str(k)]) for k in (1, 32)]

    def ratio(i: int, key: str) -> float:
        return round(step[i][key] / step[0][key], 2)

    out = {"step": step, "score": score,
           "step_time_ratio_default_vs_old": ratio(1, "seconds_per_step"),
           "step_working_ratio_default_vs_old": ratio(1, "working_gb"),
           "step_time_ratio_no_attention_dropout_vs_old": ratio(3, "seconds_per_step"),
           "step_working_ratio_no_attention_dropout_vs_old": ratio(3, "working_gb"),
           "score_working_ratio_padded_vs_not": round(score[1]["working_gb"]
                                                      / score[0]["working_gb"], 2)}
    if args.quality:
        out["quality"] = quality(args.quality)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
