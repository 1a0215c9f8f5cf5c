"""Replay real history through the real service, day by day, and measure what its users get.

It starts the service (uvicorn, loopback) on an empty SQLite database with the clock under the
bench's control (``RETENTION_CLOCK_CONTROL``), and a webhook receiver on loopback that answers
503 to the first attempt of every third warning. It loads the history before the start date
(like ``retention load``), then walks through the last ``--weeks`` weeks before ``data end - H``:
for each day D it moves the as-of date to D+1 (the end of day D), posts D's events through
``POST /v1/events`` (ingestion rescores those customers), and every ``--rescore-every`` days runs
the rescoring of everyone (``POST /v1/rescore``, the job the daily scheduler runs). At three
rescoring dates the stored probabilities are compared with offline bulk scoring (the code of
``retention score --precision fp32 --cutoff``) on the same events.

Prints one JSON object: warnings raised / delivered / lost / duplicated; precision (warned
customers who then made no order within H of the warning) against the base rate (the churn rate
of the eligible customers at the rescoring dates); recall (customers who stopped buying during
the window, warned between their last order and H days later, when they count as gone) and the
median lead time (days from the first such warning to that moment); consistency; wall time and
peak memory of the bench and of the service.

    .venv/bin/python bench/replay.py --events retail.parquet --horizon 90
    .venv/bin/python bench/replay.py --events E --model MODEL --quick 150 --weeks 6

Without ``--model`` it first trains one (``retention train`` at a small budget) on the events
before the start date only, so the model has never seen the replayed period.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "replay-secret"
POST_EVENTS = 1500  # events per request: well under the 1 MB body limit
DAY = pd.Timedelta(days=1)


class Receiver:
    """A CRM on loopback: verifies signatures, answers 503 to the first try of every third
    warning, and counts what it accepted per warning id."""

    def __init__(self) -> None:
        from service.outbox import verify

        self.accepted: dict[str, int] = {}
        self.attempts = 0
        self.bad_signatures = 0
        self.refused = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                wid = self.headers.get("X-Retention-Warning-Id", "")
                attempt = int(self.headers.get("X-Retention-Attempt", "1"))
                with lock:
                    outer.attempts += 1
                    if not verify(SECRET, self.headers.get("X-Retention-Signature", ""), body):
                        outer.bad_signatures += 1
                        code = 401
                    elif attempt == 1 and int(hashlib.sha256(wid.encode()).hexdigest(), 16) % 3 == 0:
                        outer.refused += 1
                        code = 503
                    else:
                        outer.accepted[wid] = outer.accepted.get(wid, 0) + 1
                        code = 204
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample(events: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if not n:
        return events
    ids = pd.Series(sorted(events["customer_id"].astype(str).unique()))
    order = np.argsort(pd.util.hash_array(ids.to_numpy(dtype=object)), kind="stable")
    return events[events["customer_id"].isin(set(ids.iloc[order[:n]]))].reset_index(drop=True)


def _train(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, horizon: int,
           root: Path) -> tuple[Path, str]:
    """A model that has never seen the replayed days: trained on the events before ``start``.
    When they span too little for the horizon (Online Retail has one year), the backtest fit on
    the events before ``end`` is used instead, and the result says that this model saw the
    window's outcomes (its precision and recall are then optimistic)."""
    from finetune.evaluate import EvaluateConfig
    from finetune.labels import ChurnDefinition
    from finetune.lora import LoraConfig
    from finetune.train import train

    config = EvaluateConfig(definition=ChurnDefinition(horizon=horizon),
                            lora=LoraConfig(max_tokens=64, epochs=1),
                            encoder_max_examples=1500)
    note = lambda m: print(f"train: {m}", file=sys.stderr, flush=True)
    try:
        train(events[events["ts"] < start], config, root, dataset="replay-train", progress=note)
        return root, "trained on the events before the start date only"
    except ValueError as exc:
        note(f"{exc}: training on the events before the replay's end instead")
    _, result = train(events[events["ts"] < end], config, root, dataset="replay-train",
                      progress=note, refit_published=False)
    return root, ("PARTLY IN-SAMPLE: the events before the start span too little for the "
                  "horizon, so the model is the backtest fit on the events before the replay's "
                  f"end; its training labels reach {result['test_cutoff']}, inside the window")


def _rows(frame: pd.DataFrame) -> list[dict]:
    frame = frame.astype(object).where(frame.notna(), None)
    out = []
    for r in frame.to_dict("records"):
        r["ts"] = pd.Timestamp(r["ts"]).isoformat()
        r["event"] = str(r["event"])
        out.append({k: v for k, v in r.items() if v is not None})
    return out


def warning_outcomes(events: pd.DataFrame, warnings: pd.DataFrame,
                     rescore_dates: list[pd.Timestamp], definition: Any, start: pd.Timestamp,
                     end: pd.Timestamp) -> dict[str, Any]:
    """Did the warnings mean something? Judged with the model's own churn definition.

    precision: warned customers with no order in the horizon after their warning's date (the
    label the model predicts, ``churn_labels`` at that date); base_rate: the churn rate of the
    eligible customers at the rescoring dates; recall: customers whose last order falls in the
    window early enough that they count as gone (last order + H) inside it, warned between
    their last order and that moment; median_lead_days: from that first warning to gone."""
    from finetune.labels import churn_labels, eligible_customers

    H = definition.horizon * DAY
    w = warnings.assign(when=pd.to_datetime(warnings["as_of"]).dt.tz_localize("UTC"))
    churned = pd.Series(False, index=w.index)
    for when, rows in w.groupby("when"):
        ids = pd.Index(rows["customer_id"].astype(str), dtype="string")
        labels = churn_labels(events, when, ids, definition).to_numpy()
        churned[rows.index] = labels.astype(bool)
    base = []
    for when in rescore_dates:
        ids = eligible_customers(events, when, definition)
        if len(ids):
            base.append(float(churn_labels(events, when, ids, definition).mean()))
    orders = events[events["event"].isin(list(definition.activity_events))]
    last = orders.groupby("customer_id", observed=True)["ts"].max()
    churners = last[(last >= start) & (last.dt.normalize() + DAY + H <= end)]
    lead = []
    for cid, when_last in churners.items():
        gone = when_last.normalize() + DAY + H
        mine = w[(w["customer_id"] == cid) & (w["when"] > when_last) & (w["when"] <= gone)]
        if len(mine):
            lead.append((gone - mine["when"].min()).days)
    return {"precision": float(churned.mean()) if len(w) else None,
            "base_rate": float(np.mean(base)) if base else None,
            "recall": len(lead) / len(churners) if len(churners) else None,
            "churners": len(churners), "warned_churners": len(lead),
            "median_lead_days": float(np.median(lead)) if lead else None}


class Service:
    def __init__(self, home: Path, model: Path, receiver: Receiver, start: pd.Timestamp,
                 threshold: float) -> None:
        import httpx

        self.port = _free_port()
        env = {**os.environ, "RETENTION_HOME": str(home), "RETENTION_MODEL_DIR": str(model),
               "RETENTION_AS_OF": start.date().isoformat(), "RETENTION_CLOCK_CONTROL": "true",
               "RETENTION_RESCORE_AT": "", "RETENTION_LLM_BACKEND": "none",
               "RETENTION_WEBHOOK_URL": receiver.url, "RETENTION_WEBHOOK_SECRET": SECRET,
               "RETENTION_WEBHOOK_BACKOFF_S": "0.5", "RETENTION_WEBHOOK_BACKOFF_MAX_S": "5",
               "RETENTION_RISK_THRESHOLD": str(threshold)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, cwd=ROOT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=1800)
        for _ in range(600):
            try:
                if self.http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("the service exited at start-up")
            time.sleep(0.2)
        else:
            raise RuntimeError("the service did not become ready")

    def call(self, method: str, path: str, key: str, **kwargs: Any) -> Any:
        res = self.http.request(method, path, headers={"Authorization": f"Bearer {key}"},
                                **kwargs)
        if res.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {res.status_code} {res.text[:300]}")
        return res.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def main() -> None:
    from assistant.stream import StreamConfig, score_file
    from finetune.artifacts import TrainedModel
    from finetune.loaders import load_events, write_events
    from service import db

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--horizon", type=int, default=None, help="default: the model's")
    ap.add_argument("--model", type=Path, default=None, help="default: train one before start")
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--rescore-every", type=int, default=7)
    ap.add_argument("--threshold", type=float, default=0.6, help="RETENTION_RISK_THRESHOLD")
    ap.add_argument("--quick", type=int, default=None, help="replay a sample of N customers")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    started = time.time()

    events, _ = load_events(args.events)
    events = _sample(events, args.quick)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="replay-"))
    work.mkdir(parents=True, exist_ok=True)
    data_end = events["ts"].max().normalize() + DAY
    horizon = args.horizon
    if args.model is not None:
        definition = TrainedModel.load(args.model).definition
        horizon = horizon or definition.horizon
        if horizon != definition.horizon:
            raise SystemExit(f"--horizon {horizon} differs from the model's {definition.horizon}")
    horizon = horizon or 90
    end = data_end - horizon * DAY  # the last day whose outcome window the data covers
    start = end - args.weeks * 7 * DAY
    if args.model is not None:
        model, model_note = args.model, "given with --model"
    else:
        model, model_note = _train(events, start, end, horizon, work / "models")
    train_s = time.time() - started
    definition = TrainedModel.load(model).definition

    home = work / "home"
    settings_db = f"sqlite:///{home / 'retention.db'}"
    engine = db.engine_for(settings_db)
    with db.sessions(engine)() as session:
        db.upsert_events(session, events[events["ts"] < start])
        key = db.create_key(session, "replay", "admin")
    receiver = Receiver()
    service = Service(home, model, receiver, start, args.threshold)
    timings: dict[str, float] = {"ingest": 0.0, "rescore": 0.0, "offline": 0.0}
    rescore_dates: list[pd.Timestamp] = []
    posted = 0
    try:
        days = pd.date_range(start, end - DAY, freq="D")
        replay = events[(events["ts"] >= start) & (events["ts"] < end)]
        by_day = dict(tuple(replay.groupby(replay["ts"].dt.normalize())))
        for k, day in enumerate(days):
            as_of = day + DAY
            service.call("PUT", "/v1/clock", key, json={"as_of": as_of.date().isoformat()})
            todays = by_day.get(day)
            t0 = time.time()
            if todays is not None:
                rows = _rows(todays)
                for i in range(0, len(rows), POST_EVENTS):
                    service.call("POST", "/v1/events", key, json={"events": rows[i:i + POST_EVENTS]})
                posted += len(rows)
            timings["ingest"] += time.time() - t0
            if k % args.rescore_every == 0 or k == len(days) - 1:
                t0 = time.time()
                run = service.call("POST", "/v1/rescore?wait=true", key)
                timings["rescore"] += time.time() - t0
                rescore_dates.append(as_of)
                print(f"{as_of.date()}: rescored {run['customers']}, {run['warnings']} new "
                      f"warnings", file=sys.stderr, flush=True)
        # Let the outbox drain: retries back off 0.5 s, doubling up to 5 s.
        deadline = time.time() + 120
        while time.time() < deadline:
            pending = service.call("GET", "/v1/webhooks/deliveries?status=pending&limit=1", key)
            if not pending:
                break
            time.sleep(0.5)
    finally:
        service.stop()

    # ---- what the service stored ------------------------------------------------------------
    with db.sessions(engine)() as session:
        warnings = pd.read_sql("SELECT id, customer_id, as_of, status, attempts FROM warnings",
                               session.connection())
        history = pd.read_sql("SELECT customer_id, as_of, probability FROM score_history",
                              session.connection())
    engine.dispose()

    # ---- consistency with offline scoring at three rescoring dates ---------------------------
    t0 = time.time()
    offline_file = work / "events.parquet"
    write_events(events[events["ts"] < end], offline_file)
    checks = []
    picks = sorted({rescore_dates[0], rescore_dates[len(rescore_dates) // 2], rescore_dates[-1]})
    for when in picks:
        out = work / f"offline-{when.date()}.parquet"
        score_file(model, offline_file, out, cutoff=when, config=StreamConfig(precision="fp32"))
        ref = pd.read_parquet(out).set_index("customer_id")["probability"]
        mine = history[history["as_of"] == when.date().isoformat()].set_index(
            "customer_id")["probability"]
        both = ref.index.intersection(mine.index)
        checks.append({"as_of": str(when.date()), "offline_customers": len(ref),
                       "service_customers": len(mine), "common": len(both),
                       "max_abs_diff": float((ref[both] - mine[both]).abs().max())})
    timings["offline"] = time.time() - t0

    outcome = warning_outcomes(events, warnings, rescore_dates, definition, start, end)
    # The honest part when the model's training labels reach into the window.
    seen = pd.Timestamp(TrainedModel.load(model).config.get("trained_through", start.date()),
                        tz="UTC")
    if seen > start:
        later = warnings[pd.to_datetime(warnings["as_of"]).dt.tz_localize("UTC") > seen]
        outcome["after_training_labels"] = {"from": str(seen.date()), "warnings": len(later),
                                            **warning_outcomes(events, later, [
                                                d for d in rescore_dates if d > seen],
                                                definition, seen, end)}
    delivered_ids = set(warnings.loc[warnings["status"] == "delivered", "id"])
    result = {
        "dataset": args.events.name, "horizon": horizon, "customers": int(
            events["customer_id"].nunique()), "start": str(start.date()), "end": str(end.date()),
        "days": len(days), "events_posted": posted, "rescorings": len(rescore_dates),
        "threshold": args.threshold, "model": str(model), "model_note": model_note,
        "warnings": {
            "raised": len(warnings), "delivered": len(delivered_ids),
            "lost": len(set(warnings["id"]) - set(receiver.accepted)),
            "duplicates": int(sum(n - 1 for n in receiver.accepted.values() if n > 1)),
            "refused_first_attempts": receiver.refused, "attempts": receiver.attempts,
            "bad_signatures": receiver.bad_signatures,
            "status": warnings["status"].value_counts().to_dict()},
        **outcome,
        "consistency": checks,
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "seconds": {"total": round(time.time() - started, 1), "train": round(train_s, 1),
                    **{k: round(v, 1) for k, v in timings.items()}},
        "peak_rss_mb": {
            "bench": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "service": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
