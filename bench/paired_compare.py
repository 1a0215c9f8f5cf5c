"""Is run A's model really better than run B's on the same test customers?

Reads two prediction files written by ``retention evaluate --predictions`` (e.g. with text and
with ``--no-text``) and prints the AUC gap with a paired-bootstrap 95% interval as JSON:

    .venv/bin/python bench/paired_compare.py --a text.parquet --b notext.parquet --model encoder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from finetune.evaluate import compare_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, required=True)
    ap.add_argument("--b", type=Path, required=True)
    ap.add_argument("--model", required=True, help="model column of run A (and of B by default)")
    ap.add_argument("--model-b", default=None, help="model column of run B when it differs")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    read = (lambda p: pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p))
    result = compare_runs(read(args.a), read(args.b), args.model, args.model_b, args.n_boot)
    print(json.dumps({"a": str(args.a), "b": str(args.b), **result}, indent=2))


if __name__ == "__main__":
    main()
