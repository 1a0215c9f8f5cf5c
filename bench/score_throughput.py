"""Scoring speed: a naive Hugging Face path against the project's scorer, same snapshots, one run.

(a) naive: the PEFT model as trained (adapters not merged), fp32, batches of 8 (Hugging Face's
    default evaluation batch), every text padded to 256 tokens.
(b) project: LoRA merged into the base weights, dynamic int8 linear layers, length-sorted batches
    of 64 with no padding beyond each batch's longest text.
Also (b0): (b) without int8, and (b00): (b0) with the adapters not merged (how `retention
evaluate` scored before it folded them into a copy), to show what each choice buys and costs.

Each path runs in its own process (so peak memory is its own) on the same serialized snapshots
at the model's test cutoff, and each ends in the encoder's calibrated probability: the encoder
alone, because the served stack may not read it (then scoring it costs nothing and says nothing
about the encoder). Prints JSON.

    .venv/bin/python bench/score_throughput.py --model MODEL --events EVENTS [--customers 1000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAIVE_BATCH = 8
NAIVE_PAD = 256


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _naive_logits(enc, texts: list[str]) -> np.ndarray:
    import torch

    tok = enc.tokenizer
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), NAIVE_BATCH):
            batch = tok(texts[start:start + NAIVE_BATCH], padding="max_length", truncation=True,
                        max_length=NAIVE_PAD, return_tensors="pt")
            out.append(enc.model(batch["input_ids"], batch["attention_mask"]).numpy())
    return np.concatenate(out).astype(np.float64)


def run_path(path: str, model_dir: str, frame_file: str, queue: mp.Queue) -> None:
    """One scoring path in a fresh process: seconds, probabilities, peak memory."""
    from assistant.stream import StreamConfig, load_for_scoring
    from finetune.artifacts import resolve_version_dir

    frame = pd.read_parquet(frame_file)
    version = resolve_version_dir(Path(model_dir))
    start = time.perf_counter()
    if path in ("naive", "unmerged"):
        import torch

        from finetune.calibration import calibrator_from_dict
        from finetune.churn_models import EncoderKind
        from finetune.lora import EncoderChurnModel

        enc = EncoderChurnModel.load(version, merge=False)
        cal = calibrator_from_dict(json.loads((version / "calibration.json").read_text()))
        kind = EncoderKind(config=enc.config, model=enc, calibrator=cal)  # type: ignore[arg-type]
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        texts = frame["text"].tolist()
        kind._cache[hash(tuple(frame["text"]))] = (
            _naive_logits(enc, texts) if path == "naive"
            else enc._logits(enc._encode(texts), torch.device("cpu"), 64))  # the PEFT network
        p = kind.predict_proba(frame)
    else:
        model = load_for_scoring(version, StreamConfig(precision="int8" if path == "project"
                                                       else "fp32"))
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        p = model.predict(frame, kind="encoder")
    seconds = time.perf_counter() - start
    queue.put({"path": path, "seconds": seconds, "load_seconds": load_s,
               "probabilities": p.tolist(), "peak_rss_gb": _peak_gb()})


def _in_child(path: str, model: Path, frame_file: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_path, args=(path, str(model), str(frame_file), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--cutoff", default=None, help="default: the model's test cutoff")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from finetune.artifacts import TrainedModel
    from finetune.labels import as_cutoff, churn_labels, eligible_customers
    from finetune.loaders import load_events

    events, _ = load_events(args.events)
    model = TrainedModel.load(args.model)
    cutoff = as_cutoff(args.cutoff or model.config["test_cutoff"])
    ids = eligible_customers(events, cutoff, model.definition)
    rng = np.random.default_rng(args.seed)
    ids = pd.Index(sorted(rng.choice(ids, size=min(args.customers, len(ids)), replace=False)),
                   dtype="string")
    start = time.perf_counter()
    frame, _ = model.snapshot(events, cutoff, list(ids))
    prep_s = time.perf_counter() - start
    y = churn_labels(events, cutoff, ids, model.definition).reindex(frame["customer_id"]).to_numpy()
    lengths = [len(x) for x in model.encoder.model.tokenizer(frame["text"].tolist())["input_ids"]]
    del model
    frame_file = Path(f"/tmp/score_throughput_{args.seed}.parquet")
    frame.to_parquet(frame_file, index=False)

    runs = {name: _in_child(name, args.model, frame_file) for name in ("naive", "unmerged", "fp32",
                                                                  "project")}
    frame_file.unlink()
    n = len(frame)
    p = {k: np.array(v["probabilities"]) for k, v in runs.items()}
    result = {
        "customers": n, "cutoff": str(cutoff.date()), "events": str(args.events),
        "model": str(args.model), "torch_threads": torch.get_num_threads(),
        "tokens_mean": float(np.mean(lengths)), "tokens_max": int(np.max(lengths)),
        "features_and_serialization_s": round(prep_s, 2),
        "paths": {k: {"customers_per_s": round(n / v["seconds"], 1),
                      "seconds": round(v["seconds"], 2), "load_seconds": round(v["load_seconds"], 2),
                      "peak_rss_gb": round(v["peak_rss_gb"], 3),
                      "roc_auc": round(float(roc_auc_score(y, p[k])), 4)}
                  for k, v in runs.items()},
        "ratio": round(runs["naive"]["seconds"] / runs["project"]["seconds"], 2),
        "ratio_fp32_merged_bucketed": round(runs["naive"]["seconds"] / runs["fp32"]["seconds"], 2),
        "ratio_merging_alone": round(runs["unmerged"]["seconds"] / runs["fp32"]["seconds"], 2),
        "max_abs_diff_fp32_vs_unmerged": float(np.abs(p["fp32"] - p["unmerged"]).max()),
        "max_abs_diff_project_vs_naive": float(np.abs(p["project"] - p["naive"]).max()),
        "max_abs_diff_fp32_vs_naive": float(np.abs(p["fp32"] - p["naive"]).max()),
        "roc_auc_diff_project_vs_naive": round(float(roc_auc_score(y, p["project"])
                                                     - roc_auc_score(y, p["naive"])), 4),
        "naive": {"batch": NAIVE_BATCH, "pad_to": NAIVE_PAD, "merged": False, "dtype": "fp32"},
        "project": {"batch": 64, "pad_to": "longest in a length-sorted batch", "merged": True,
                    "dtype": "int8 dynamic (linear layers)"},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
