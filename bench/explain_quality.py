"""Attribution faithfulness and explanation quality on a trained model's test customers.

Prints one JSON object:
- faithfulness: over N test customers (a seeded random sample of those eligible at the model's
  test cutoff), the mean fall in churn probability when the 3 top-attributed segments are removed
  together, against 3 random segments; ``passes`` when top >= 2 x max(random, 0). Four rows:
  the old occlusion attributions and the served ones (TreeSHAP + occlusion in the stack's
  log-odds), each with a removed fact leaving the text only and with its aggregates also reset
  to the medians of every customer scored (``reference``).
- explanations (with --explain M): per language, M customers explained with the chosen backend:
  fallback rate; the share where at least one reason the LLM wrote is shown; top-1 and top-3
  driver coverage (of the model's own reasons, and as shown, after
  the deterministic reason of a missed driver is added); time to the first reason (score,
  attributions, drivers and the deterministic wording: what the stream sends first), time to
  the full LLM explanation, p50/p95; prompt and completion tokens and tokens per second (local
  backend); the share of second looks (cache hits) answered under 200 ms.

    .venv/bin/python bench/explain_quality.py --model MODEL_DIR --events FILE \\
        [--customers 200] [--explain 50 --backend local --langs en,zh]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from langchain_core.callbacks import BaseCallbackHandler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.attributions import faithfulness, occlusion_many
from assistant.cache import ExplanationCache
from assistant.checks import check_explanation, coverage_problems
from assistant.drivers import top
from assistant.explain import Assistant
from assistant.llm import LLMConfig, chat_model
from assistant.playbook import Playbook
from assistant.retrieval import ContextStore
from assistant.schema import Draft
from assistant.scoring import Scorer
from finetune.artifacts import TrainedModel
from finetune.loaders import load_events


class Usage(BaseCallbackHandler):
    """Token counts of every LLM call, from llama.cpp's own usage figures."""

    def __init__(self) -> None:
        self.prompt: list[int] = []
        self.completion: list[int] = []

    def on_llm_end(self, response, **kwargs) -> None:
        for gens in response.generations:
            for g in gens:
                usage = getattr(g, "message", None) and g.message.response_metadata.get("usage")
                if usage:
                    self.prompt.append(int(usage.get("prompt_tokens", 0)))
                    self.completion.append(int(usage.get("completion_tokens", 0)))


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def said(reasons, drivers, lang: str) -> list[bool]:
    """For each driver: is it said (cited, with its figures) by one of these reasons?"""
    draft = Draft.model_construct(reasons=reasons, actions=[])
    return [not coverage_problems(draft, {d.sid: d.text(lang)}) for d in drivers]


def split_problems(joined: str) -> list[str]:
    """The checks' messages back out of ``fallback_reason`` (joined with "; "), where a message
    may itself hold "; " ("... more than 2 sentences; write one or two short ones")."""
    parts = re.split(r"; (?=(?:reason|action) \d|no reason mentions|there are no reasons)", joined)
    return [p for p in parts if p.strip()]


def problem_kind(problem: str) -> str:
    """A check's message without the item, the quoted or bracketed text and the numbers it
    names, so failures can be counted by kind ("reason 2 has number(s) 80 that are not in its
    cited evidence" -> "reason has number N that are not in its cited evidence")."""
    text = re.sub(r"^(reason|action)\s*\d+\s*:?\s*", r"\1 ", problem.strip())
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", re.sub(r"\s*\([^)]*\)", "", text))
    return re.sub(r"\d+(\.\d+)?", "N", text)[:120]


def explain_lang(helper: Assistant, events: pd.DataFrame, picked: list[str], cutoff: str,
                 lang: str, usage: Usage) -> dict:
    first_s, full_s, cached_s = [], [], []
    fallbacks = failing = 0
    why: Counter[str] = Counter()  # the checks the last draft failed, by kind, when it fell back
    dropped: Counter[str] = Counter()  # the checks of items removed from a draft that was shown
    top1_llm, top1_shown, top3_llm, top3_shown, added, own_shown = [], [], [], [], 0, 0
    calls_before = len(usage.prompt)
    llm_seconds = 0.0
    for cid in picked:
        t = time.perf_counter()
        ctx = helper.prepare(events, cid, lang=lang, cutoff=cutoff)
        helper.deterministic(ctx)
        first_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        x = helper.write(ctx)
        llm_seconds += time.perf_counter() - t
        full_s.append(first_s[-1] + time.perf_counter() - t)
        helper.remember(helper.cache_key(events, cid, lang, cutoff), x)
        t = time.perf_counter()
        hit = helper.explain(events, cid, lang=lang, cutoff=cutoff)
        cached_s.append(time.perf_counter() - t)
        assert hit == x
        fallbacks += x.fallback
        why.update(problem_kind(p) for p in split_problems(x.fallback_reason or ""))
        dropped.update(problem_kind(p) for p in x.dropped)
        failing += bool(check_explanation(x, helper.playbook, ctx.scored.facts))
        added += bool(x.added)
        own = [] if x.fallback else [r for r in x.reasons if not set(r.evidence) & set(x.added)]
        own_shown += bool(own)
        wanted = top(ctx.drivers, 3)
        if wanted:
            llm_said, shown_said = said(own, wanted, lang), said(x.reasons, wanted, lang)
            top1_llm.append(llm_said[0])
            top1_shown.append(shown_said[0])
            top3_llm += llm_said
            top3_shown += shown_said
        print(json.dumps({"customer_id": cid, "lang": lang, "first_s": round(first_s[-1], 3),
                          "full_s": round(full_s[-1], 1), "fallback": x.fallback,
                          "added": x.added, "reasons": [r.text for r in x.reasons],
                          "fallback_reason": x.fallback_reason, "dropped": x.dropped},
                         ensure_ascii=False), file=sys.stderr, flush=True)
    prompt, completion = usage.prompt[calls_before:], usage.completion[calls_before:]
    mean = (lambda xs: float(np.mean(xs)) if xs else None)
    return {
        "n": len(picked), "fallback_rate": fallbacks / len(picked),
        "fallback_problems": dict(why.most_common()),
        "dropped_problems": dict(dropped.most_common()),
        "shown_failing_checks": failing,
        "top1_coverage_llm": mean(top1_llm), "top3_coverage_llm": mean(top3_llm),
        "top1_coverage_shown": mean(top1_shown), "top3_coverage_shown": mean(top3_shown),
        "explanations_with_an_added_reason": added,
        # Not a fallback, yet every reason shown may be a deterministic one put in by ``cover``:
        # this is the share where the agent reads at least one reason the LLM wrote.
        "llm_reason_shown_rate": own_shown / len(picked),
        "first_reason_p50_s": pct(first_s, 50), "first_reason_p95_s": pct(first_s, 95),
        "full_p50_s": pct(full_s, 50), "full_p95_s": pct(full_s, 95),
        "cached_p50_ms": 1000 * pct(cached_s, 50), "cached_share_under_200ms":
            float(np.mean([s < 0.2 for s in cached_s])),
        "llm_calls": len(prompt), "prompt_tokens_mean": mean(prompt),
        "completion_tokens_mean": mean(completion),
        "tokens_per_s": (sum(prompt) + sum(completion)) / llm_seconds if prompt else None,
        "completion_tokens_per_s_upper": sum(completion) / llm_seconds if prompt else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--explain", type=int, default=0)
    ap.add_argument("--backend", default="local")
    ap.add_argument("--langs", default="en")
    ap.add_argument("--max-tokens", type=int, default=384, help="LLM output cap per attempt")
    ap.add_argument("--store", type=Path, default=None, help="Chroma dir (default: a temp one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    events, _ = load_events(args.events)
    model = TrainedModel.load(args.model)
    scorer = Scorer(model)
    cutoff = model.config["test_cutoff"]
    frame, _ = model.snapshot(events, cutoff)
    reference = frame[list(model.config["features"])].median()
    scores = scorer.score(events, cutoff=cutoff)
    rng = np.random.default_rng(args.seed)
    ids = rng.permutation(scores["customer_id"].to_numpy())
    out: dict = {"model": str(model.directory), "events": str(args.events), "cutoff": cutoff,
                 "eligible": len(scores)}

    if args.customers:
        started = time.time()
        sample = scorer.customers(events, [str(c) for c in ids[:args.customers]], cutoff)
        rows = {}
        for name, method in (("occlusion", occlusion_many), ("served", None)):
            for ref in (False, True):
                key = f"{name}{'_reference' if ref else '_text_only'}"
                rows[key] = faithfulness(scorer, sample, k=3, seed=args.seed, method=method,
                                         reference=reference if ref else None).to_dict()
        out["faithfulness"] = {**rows, "seconds": round(time.time() - started, 1)}

    if args.explain:
        store = ContextStore(args.store or Path(tempfile.mkdtemp(prefix="bench-chroma-")))
        picked = [str(c) for c in ids[:args.explain]]
        store.index_events(events[events["customer_id"].isin(picked)])
        usage = Usage()
        llm = chat_model(LLMConfig(backend=args.backend, max_tokens=args.max_tokens))
        if llm is not None:
            llm.callbacks = [usage]
        helper = Assistant(scorer, Playbook.load(), store=store, llm=llm, backend=args.backend,
                           cache=ExplanationCache())
        # Warm-up on a customer outside the sample: the embedding model, the LLM's weights and
        # its system-prompt prefix load once per process, not per agent's look.
        helper.write(helper.prepare(events, str(ids[-1]), cutoff=cutoff))
        out["explanations"] = {"backend": args.backend, **{
            lang: explain_lang(helper, events, picked, cutoff, lang, usage)
            for lang in args.langs.split(",")}}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
