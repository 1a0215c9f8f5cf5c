"""Report scoring speed: customer by customer (the old path) against one batch per chunk.

A report row needs the customer's score and an occlusion attribution per segment (~20 model
inputs per customer). (a) one by one: ``Scorer.customer`` and ``attribute`` per customer, as the
agents' page does it. (b) batched: ``service.reports.score_chunk``, which scores a chunk's
customers in one pass and all their occlusion variants in one more (one feature pass, one
serialization pass, length-sorted model batches). Same process, same model, same customers, warm
caches for both; prints JSON with customers per second, the ratio, and how far the two disagree.

    .venv/bin/python bench/report_speed.py --model MODEL --events EVENTS [--customers 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from assistant.attributions import attribute
    from assistant.drivers import group, top
    from assistant.explain import Assistant
    from assistant.playbook import Playbook
    from assistant.scoring import Scorer
    from finetune.artifacts import TrainedModel
    from finetune.labels import as_cutoff, eligible_customers
    from finetune.loaders import load_events
    from service.reports import CHUNK, score_chunk

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--cutoff", help="as-of date (default: the model's test cutoff)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    events, _ = load_events(args.events)
    model = TrainedModel.load(args.model)
    helper = Assistant(Scorer(model), Playbook.load())
    cutoff = as_cutoff(args.cutoff or model.config["test_cutoff"])
    ids = eligible_customers(events, cutoff, model.definition).astype(str).to_numpy()
    ids = sorted(np.random.default_rng(args.seed).permutation(ids)[:args.customers].tolist())
    score_chunk(helper, events, ids[:4], cutoff)  # warm-up: tokenizer, threads, lazy imports

    started = time.perf_counter()
    one_by_one = {}
    for cid in ids:
        scored = helper.scorer.customer(events, cid, cutoff)
        drivers = top(group(scored, attribute(helper.scorer, scored)))
        one_by_one[cid] = (scored.probability, ",".join(d.sid for d in drivers))
    naive_s = time.perf_counter() - started

    started = time.perf_counter()
    frames = [score_chunk(helper, events, ids[i:i + CHUNK], cutoff)
              for i in range(0, len(ids), CHUNK)]
    batched_s = time.perf_counter() - started

    rows = [r for f in frames for r in f.itertuples()]
    diffs = [abs(r.probability - one_by_one[r.customer_id][0]) for r in rows]
    same = [r.reason_evidence == one_by_one[r.customer_id][1] for r in rows]
    print(json.dumps({
        "model": str(model.directory), "events": str(args.events),
        "cutoff": str(cutoff.date()), "customers": len(ids), "chunk": CHUNK,
        "one_by_one_s": round(naive_s, 1), "batched_s": round(batched_s, 1),
        "one_by_one_per_customer_s": round(naive_s / len(ids), 3),
        "batched_per_customer_s": round(batched_s / len(ids), 3),
        "speedup": round(naive_s / batched_s, 2),
        "max_probability_diff": float(max(diffs)),
        "same_reasons_fraction": float(np.mean(same)),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
    }))


if __name__ == "__main__":
    main()
