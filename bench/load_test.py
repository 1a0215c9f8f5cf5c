"""Load test on loopback: N concurrent CRM clients scoring customers through the real service.

Starts `retention serve` in a child process on a fresh home (SQLite, the given model and events),
then C clients each send `POST /v1/score` for one random stored customer, back to back, for S
seconds. A request is lost if it raises or does not return 200. Prints JSON: requests, lost,
throughput, latency percentiles.

``--batch-customers N`` measures starvation in the same run: the clients run once alone, then
again while one more client sends batches of N customers back to back (a CRM's nightly sync);
the JSON gives both phases and the ratio of the single requests' p50/p95 latency.

    .venv/bin/python bench/load_test.py --model MODEL --events EVENTS [--clients 20 --seconds 60]
    .venv/bin/python bench/load_test.py --model MODEL --events EVENTS --clients 2 --batch-customers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path, events_path: Path) -> tuple[str, list[str]]:
    from finetune.loaders import load_events
    from service import db
    from service.settings import Settings

    events, _ = load_events(events_path)
    settings = Settings(home=home)
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, events)
        key = db.create_key(session, "load test", "crm")
    engine.dispose()
    return key, sorted(events["customer_id"].unique().tolist())


async def client(http: httpx.AsyncClient, key: str, ids: list[str], until: float,
                 rng: random.Random, out: list[tuple[float, int]]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            res = await http.post("/v1/score", json={"customer_ids": [rng.choice(ids)]},
                                  headers={"Authorization": f"Bearer {key}"})
            status = res.status_code
        except httpx.HTTPError:
            status = -1
        out.append((time.perf_counter() - started, status))


async def batcher(http: httpx.AsyncClient, key: str, ids: list[str], n: int, until: float,
                  out: list[tuple[float, int]]) -> None:
    rng = random.Random(99)
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            res = await http.post("/v1/score", json={"customer_ids": rng.sample(ids, n)},
                                  headers={"Authorization": f"Bearer {key}"})
            status = res.status_code
        except httpx.HTTPError:
            status = -1
        out.append((time.perf_counter() - started, status))


async def run(base: str, key: str, ids: list[str], clients: int, seconds: float,
              batch: int = 0) -> dict:
    results: list[tuple[float, int]] = []
    batches: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        until = time.monotonic() + seconds
        started = time.perf_counter()
        extra = [batcher(http, key, ids, batch, until, batches)] if batch else []
        await asyncio.gather(*(client(http, key, ids, until, random.Random(i), results)
                               for i in range(clients)), *extra)
        wall = time.perf_counter() - started
    lat = np.array([r[0] for r in results])
    ok = sum(1 for r in results if r[1] == 200)
    return {"requests": len(results), "ok": ok, "lost": len(results) - ok,
            "statuses": sorted({r[1] for r in results}), "wall_s": round(wall, 1),
            "throughput_rps": round(len(results) / wall, 2),
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
            "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
            "latency_max_ms": round(float(lat.max()) * 1000, 1),
            **({"batches": len(batches), "batch_customers": batch,
                "batch_statuses": sorted({b[1] for b in batches}),
                "batch_latency_p50_s": round(float(np.percentile([b[0] for b in batches], 50)), 1)
                if batches else None} if batch else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch-customers", type=int, default=0,
                    help="also run a phase with one client sending batches of N customers")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="retention-load-"))
    key, ids = prepare(home, args.events)
    port = free_port()
    env = {**os.environ, "RETENTION_HOME": str(home), "RETENTION_MODEL_DIR": str(args.model),
           "RETENTION_LLM_BACKEND": "none", "RETENTION_RESCORE_AT": "",
           "RETENTION_MAX_BATCH": str(max(1000, args.batch_customers))}
    server = subprocess.Popen([str(ROOT / ".venv/bin/retention"), "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # the model loads on the first readiness probe
            try:
                if httpx.get(f"{base}/readyz", timeout=60).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the service did not become ready")
        result = asyncio.run(run(base, key, ids, args.clients, args.seconds))
        if args.batch_customers:
            busy = asyncio.run(run(base, key, ids, args.clients, args.seconds,
                                   args.batch_customers))
            result = {"alone": result, "with_batches": busy, "p50_ratio": round(
                busy["latency_p50_ms"] / result["latency_p50_ms"], 2), "p95_ratio": round(
                busy["latency_p95_ms"] / result["latency_p95_ms"], 2)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"clients": args.clients, "seconds": args.seconds, "route": "POST /v1/score",
                      "customers_stored": len(ids), "model": str(args.model),
                      "events": str(args.events), **result}, indent=2))


if __name__ == "__main__":
    main()
