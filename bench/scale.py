"""How do `retention evaluate`'s time and memory grow with the number of customers?

Generates a seeded synthetic log of each size (``retention demo-data``, not timed), then runs the
real ``retention evaluate`` on it at its defaults (every baseline and the served model chosen on
validation) in a child process, and prints one JSON object: per size, the wall time, the peak
resident memory of that child, the time of each stage (from the timestamped progress lines the
CLI writes when its output is not a terminal), and the served model's test ROC-AUC against the
best baseline's. Targets (#17, 2 cores): 25,000 customers under 15 minutes and 3 GB; 250,000
under 2 hours.

    .venv/bin/python bench/scale.py --customers 25000 [--customers 250000] [--extra '--origins 3']
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d\d:\d\d:\d\d \[\s*(\d+)s\] [^:]+: (.*)$")


def stage_of(message: str) -> str:
    """'origin 2/3: snapshot 2024-01-31' -> 'snapshots'; 'fitting lightgbm' stays."""
    message = re.sub(r"^origin \d+/\d+: ", "", message)
    if message.startswith("snapshot "):
        return "snapshots"
    if message.startswith("training window"):
        return "choosing the training window on validation"
    return message.split(" (")[0]


def stage_seconds(stderr: str) -> dict[str, float]:
    """Seconds between one progress line and the next, summed per stage."""
    marks = [(int(m.group(1)), stage_of(m.group(2))) for line in stderr.splitlines()
             if (m := LINE.match(line.strip()))]
    out: dict[str, float] = defaultdict(float)
    for (t0, stage), (t1, _) in pairwise(marks):
        out[stage] += t1 - t0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(customers: int, extra: list[str], workdir: Path) -> dict:
    data = workdir / f"demo{customers}"
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/retention"), "demo-data", "--customers",
                    str(customers), "-o", str(data)], check=True, capture_output=True)
    generated = time.perf_counter() - started
    out = workdir / f"eval{customers}.json"
    cmd = [str(ROOT / ".venv/bin/retention"), "evaluate", "--events",
           str(data / "events.parquet"), "--json", "--out", str(out), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0 or not out.exists():
        return {"customers": customers, "error": stderr[-2000:]}
    result = json.loads(out.read_text())
    one = result["origins"][0] if "origins" in result else result
    models = result["summary"]["models"] if "origins" in result else one["models"]
    auc = {k: round(m.get("auc_mean", m.get("auc")), 4) for k, m in models.items()}
    baselines = {k: v for k, v in auc.items() if k != "served"}
    best = max(baselines, key=lambda k: baselines[k])
    import pyarrow.parquet as pq

    n_events = pq.ParquetFile(data / "events.parquet").metadata.num_rows
    return {"customers": customers, "events": n_events,
            "fit_snapshots": one["n_fit"], "test_customers": one["n_test"],
            "generate_seconds": round(generated, 1), "seconds": round(seconds, 1),
            "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 2),
            "stages_seconds": stage_seconds(stderr), "auc": auc,
            "served": one["models"]["served"]["params"]["choice"]["chosen"],
            "served_minus_best_baseline": round(auc["served"] - baselines[best], 4),
            "best_baseline": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, action="append", required=True)
    ap.add_argument("--extra", default="", help="more `retention evaluate` options")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(n, args.extra.split(), Path(tmp)) for n in args.customers]
    print(json.dumps({"bench": "scale", "cpus": os.cpu_count(), "runs": runs}))


if __name__ == "__main__":
    main()
