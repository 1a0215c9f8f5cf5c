"""Attribution faithfulness and explanation quality on a trained model's test customers.

Prints one JSON object:
- faithfulness: over N test customers (a seeded random sample of those eligible at the model's
  test cutoff), the mean fall in churn probability when the 3 top-attributed segments are removed
  together, against 3 random segments; ``passes`` when top >= 2 x max(random, 0).
- explanations (with --explain M): M customers explained with the chosen backend; fallback rate,
  the share passing the checks, median and 95th-percentile latency per explanation, peak memory.

    .venv/bin/python bench/explain_quality.py --model MODEL_DIR --events FILE \\
        [--customers 200] [--explain 50 --backend local --lang en]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.attributions import faithfulness
from assistant.checks import check_explanation
from assistant.explain import Assistant
from assistant.llm import LLMConfig, chat_model
from assistant.playbook import Playbook
from assistant.retrieval import ContextStore
from assistant.scoring import Scorer
from finetune.artifacts import TrainedModel
from finetune.loaders import load_events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--explain", type=int, default=0)
    ap.add_argument("--backend", default="local")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--max-tokens", type=int, default=384, help="LLM output cap per attempt")
    ap.add_argument("--store", type=Path, default=None, help="Chroma dir (default: a temp one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    events, _ = load_events(args.events)
    model = TrainedModel.load(args.model)
    scorer = Scorer(model)
    cutoff = model.config["test_cutoff"]
    scores = scorer.score(events, cutoff=cutoff)
    rng = np.random.default_rng(args.seed)
    ids = rng.permutation(scores["customer_id"].to_numpy())
    out: dict = {"model": str(model.directory), "events": str(args.events), "cutoff": cutoff,
                 "eligible": len(scores)}

    started = time.time()
    sample = scorer.customers(events, [str(c) for c in ids[:args.customers]], cutoff)
    out["faithfulness"] = {**faithfulness(scorer, sample, k=3, seed=args.seed).to_dict(),
                           "seconds": round(time.time() - started, 1)}

    if args.explain:
        import tempfile

        store = ContextStore(args.store or Path(tempfile.mkdtemp(prefix="bench-chroma-")))
        picked = list(ids[:args.explain])
        store.index_events(events[events["customer_id"].isin(picked)])
        llm = chat_model(LLMConfig(backend=args.backend, max_tokens=args.max_tokens))
        helper = Assistant(scorer, Playbook.load(), store=store, llm=llm, backend=args.backend)
        latencies, fallbacks, attempts, problems, unchecked, pruned = [], 0, [], [], 0, 0
        for cid in picked:
            t = time.time()
            x = helper.explain(events, cid, lang=args.lang, cutoff=cutoff)
            latencies.append(time.time() - t)
            fallbacks += x.fallback
            pruned += bool(x.dropped)
            facts = scorer.customer(events, cid, cutoff).facts
            unchecked += bool(check_explanation(x, helper.playbook, facts))
            attempts.append(x.attempts)
            if x.fallback_reason:
                problems.append(x.fallback_reason[:200])
            print(json.dumps({"customer_id": cid, "seconds": round(latencies[-1], 1),
                              "fallback": x.fallback, "attempts": x.attempts,
                              "dropped": x.dropped,
                              "why": (x.fallback_reason or "")[:160]}, ensure_ascii=False),
                  file=sys.stderr, flush=True)
        out["explanations"] = {
            "backend": args.backend, "lang": args.lang, "n": len(picked),
            "fallback_rate": fallbacks / len(picked),
            "shown_with_items_dropped": pruned,
            "shown_failing_checks": unchecked,
            "first_try_pass_rate": float(np.mean([a == 1 for a in attempts]))
            if llm is not None else 1.0,
            "latency_p50_s": float(np.percentile(latencies, 50)),
            "latency_p95_s": float(np.percentile(latencies, 95)),
            "failed_checks_examples": problems[:5]}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
