"""Bulk scoring memory: `retention score` over N synthetic customers, peak RSS of the whole run.

The events file is generated once in shards of 10,000 seeded customers (cached beside --data),
then scored by the real CLI in a child process whose peak resident memory is read back from the
kernel (ru_maxrss of the child). Prints JSON.

    .venv/bin/python bench/score_stream.py --model MODEL [--customers 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARD = 10_000


def make_events(path: Path, customers: int) -> int:
    """Seeded synthetic shards appended to one Parquet file; ids are unique across shards."""
    from finetune.contract import validate_events
    from finetune.synthetic import SyntheticConfig, generate

    tmp = path.with_name(path.name + ".tmp")
    writer, rows = None, 0
    for k in range(0, customers, SHARD):
        n = min(SHARD, customers - k)
        events, _ = generate(SyntheticConfig(customers=n, seed=1000 + k // SHARD))
        events["customer_id"] = f"S{k // SHARD:03d}-" + events["customer_id"].astype(str)
        events, _ = validate_events(events, "synthetic")
        table = pa.Table.from_pandas(events.assign(event=events["event"].astype(str)),
                                     preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.cast(writer.schema))
        rows += len(events)
        print(f"generated {k + n:,} customers, {rows:,} events", file=sys.stderr, flush=True)
    assert writer is not None
    writer.close()
    tmp.replace(path)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/retention_bench"))
    ap.add_argument("--chunk-customers", type=int, default=2000)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    args = ap.parse_args()

    args.data.mkdir(parents=True, exist_ok=True)
    events = args.data / f"synthetic_{args.customers}.parquet"
    if not events.exists():
        make_events(events, args.customers)
    out = args.data / f"scores_{args.customers}.parquet"
    cmd = [str(ROOT / ".venv/bin/retention"), "score", "--events", str(events), "--out", str(out),
           "--model", str(args.model), "--chunk-customers", str(args.chunk_customers),
           "--precision", args.precision, "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    summary = json.loads(proc.stdout)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    print(json.dumps({
        "command": " ".join(cmd[1:]), "events_rows": pq.ParquetFile(events).metadata.num_rows,
        "events_file_mb": round(events.stat().st_size / 1e6, 1), **summary,
        "wall_s": round(wall, 1), "customers_per_s": round(summary["customers"] / wall, 1),
        "peak_rss_gb": round(peak_gb, 3), "limit_gb": 3.0, "passes": peak_gb < 3.0,
    }, indent=2))


if __name__ == "__main__":
    main()
