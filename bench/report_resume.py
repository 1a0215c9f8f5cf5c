"""A report over N customers is killed (SIGKILL) halfway, started again, and compared with an
uninterrupted run: the files must be identical and finished chunks must not be redone.

Runs the real CLI (`retention report`) in child processes on the first N eligible customers of an
events file. Prints JSON with the timings and the comparison.

    .venv/bin/python bench/report_resume.py --model MODEL --events EVENTS [--customers 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FILES = ("risk_report.csv", "risk_report.parquet", "risk_report.html")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def report(events: Path, model: Path, out: Path, cutoff: str, top: int,
           kill_after_chunks: int | None = None) -> dict:
    cmd = [str(ROOT / ".venv/bin/retention"), "report", "--events", str(events), "--out", str(out),
           "--model", str(model), "--cutoff", cutoff, "--top", str(top), "--backend", "none"]
    env = {**os.environ, "RETENTION_HOME": str(out.parent / "home")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = False
    while proc.poll() is None:
        time.sleep(0.5)
        if kill_after_chunks is not None:
            done = list(out.glob(".work/*/chunk_*.parquet"))
            if len(done) >= kill_after_chunks:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    proc.wait()
    return {"seconds": round(time.perf_counter() - started, 1), "killed": killed,
            "returncode": proc.returncode,
            "chunks_on_disk": len(list(out.glob(".work/*/chunk_*.parquet")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--cutoff", default="2011-09-11")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/tmp/report_resume"))
    args = ap.parse_args()

    import shutil

    from finetune.artifacts import TrainedModel
    from finetune.labels import as_cutoff, eligible_customers
    from finetune.loaders import load_events

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    events, _ = load_events(args.events)
    definition = TrainedModel.load(args.model).definition
    ids = sorted(eligible_customers(events, as_cutoff(args.cutoff), definition).astype(str))
    ids = ids[:args.customers]
    subset = args.work / "events.parquet"
    events[events["customer_id"].isin(ids)].to_parquet(subset, index=False)
    chunks = -(-len(ids) // 100)

    straight = report(subset, args.model, args.work / "straight", args.cutoff, args.top)
    first = report(subset, args.model, args.work / "resumed", args.cutoff, args.top,
                   kill_after_chunks=chunks // 2)
    partial_files = [f for f in FILES if (args.work / "resumed" / f).exists()]
    second = report(subset, args.model, args.work / "resumed", args.cutoff, args.top)
    same = {f: digest(args.work / "straight" / f) == digest(args.work / "resumed" / f)
            for f in FILES}
    print(json.dumps({
        "customers": len(ids), "chunks": chunks, "cutoff": args.cutoff,
        "uninterrupted": straight, "killed_run": first,
        "report_files_after_kill": partial_files, "resumed_run": second,
        "identical_files": same, "passes": all(same.values()) and first["killed"]
        and not partial_files,
        "seconds_per_customer": round(straight["seconds"] / len(ids), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
