"""The HTTP API end to end on a real small model: auth and roles, scoring, risk with reasons,
explanations, ingestion with a signed webhook, problems for bad input, health and metrics."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from service import db
from service.api.app import create_app
from service.settings import Settings
from tests.conftest import service_database_url

pytestmark = pytest.mark.slow


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hook():
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def api(tmp_path_factory, trained_model, synthetic, hook):
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, model_dir=trained_model, llm_backend="none",
                        database_url=service_database_url(),
                        webhook_url=hook, webhook_secret="s3cret", risk_threshold=0.05,
                        max_body_bytes=200_000, rescore_at="", as_of="2025-09-01")
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, synthetic[0][synthetic[0]["customer_id"] < "C00050"])
        keys = {role: db.create_key(session, f"test {role}", role) for role in db.ROLES}
    with TestClient(create_app(settings)) as client:
        yield client, keys


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_health_ready_and_metrics(api):
    client, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"].startswith("v")
    assert "retention_http_requests" in client.get("/metrics").text


def test_keys_and_roles(api):
    client, keys = api
    url = "/v1/customers/C00001/explanation"
    res = client.get(url)
    assert res.status_code == 401 and res.headers["content-type"] == "application/problem+json"
    assert client.get(url, headers=auth("ra_nope_nope")).status_code == 401
    res = client.get(url, headers=auth(keys["crm"]))
    assert res.status_code == 403 and "crm" in res.json()["detail"]
    res = client.get(url, headers={"X-API-Key": keys["agent"]})
    assert res.status_code == 200, res.text
    x = res.json()
    assert x["customer_id"] == "C00001" and x["reasons"] and x["backend"] == "none"
    assert client.post("/v1/events", json={"events": []}, headers=auth(keys["agent"])
                       ).status_code == 403


def test_risk_and_batch_scoring(api):
    client, keys = api
    risk = client.get("/v1/customers/C00002/risk", headers=auth(keys["crm"])).json()
    assert 0 <= risk["probability"] <= 1 and risk["band"] in ("low", "medium", "high")
    assert all(r["evidence_id"].startswith(("fact:", "event:")) for r in risk["reasons"])
    res = client.post("/v1/score", json={"customer_ids": ["C00002", "C00003", "ZZZ"]},
                      headers=auth(keys["crm"]))
    body = res.json()
    assert res.status_code == 200 and body["unknown"] == ["ZZZ"]
    by_id = {s["customer_id"]: s for s in body["scores"]}
    # Same model, same snapshot; a batch of two and a single row differ by float rounding only.
    assert by_id["C00002"]["probability"] == pytest.approx(risk["probability"], abs=1e-6)
    assert client.get("/v1/customers/NOPE/risk", headers=auth(keys["crm"])).status_code == 404


def test_inline_events_and_bad_input(api):
    client, keys = api
    events = [{"customer_id": "new1", "ts": "2024-01-05T10:00:00Z", "event": "order",
               "amount": 20.0},
              {"customer_id": "new1", "ts": "2024-03-01T10:00:00Z", "event": "review",
               "rating": 1, "text": "Broken on arrival."}]
    res = client.post("/v1/score", json={"events": events}, headers=auth(keys["crm"]))
    assert res.status_code == 200 and res.json()["scores"][0]["customer_id"] == "new1"
    # Found by the schema fuzzer: a history that starts on or after the cutoff has no score.
    res = client.post("/v1/score", json={"events": events, "cutoff": "2024-01-05T00:00:00Z"},
                      headers=auth(keys["crm"]))
    assert res.status_code == 200 and res.json()["scores"] == []
    assert res.json()["unknown"] == ["new1"]
    bad = [dict(events[0], rating=9)]
    res = client.post("/v1/score", json={"events": bad}, headers=auth(keys["crm"]))
    assert res.status_code == 422 and "rating" in res.json()["detail"]
    res = client.post("/v1/score", json={"customer_ids": ["a"], "events": events},
                      headers=auth(keys["crm"]))
    assert res.status_code == 422 and "exactly one" in res.json()["detail"]
    res = client.post("/v1/score", content=b"x" * 300_000, headers=auth(keys["crm"]))
    assert res.status_code == 413


def _received(n: int, timeout: float = 15.0) -> list[tuple[dict, bytes]]:
    import time

    deadline = time.monotonic() + timeout
    while len(Hook.received) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return Hook.received


def test_ingestion_rescores_and_delivers_a_signed_warning(api):
    from service import outbox

    client, keys = api
    Hook.received.clear()
    events = [{"customer_id": "C90001", "ts": "2025-06-01T09:00:00Z", "event": "order",
               "amount": 35.5, "event_id": "o-1"},
              {"customer_id": "C90001", "ts": "2025-07-01T09:00:00Z", "event": "ticket",
               "text": "Still no refund, I am leaving.", "event_id": "t-1"}]
    res = client.post("/v1/events", json={"events": events}, headers=auth(keys["admin"]))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["stored"] == 2 and body["as_of"] == "2025-09-01"
    first = body["rescored"][0]
    assert first["customer_id"] == "C90001" and first["as_of"] == "2025-09-01"
    assert first["warning"].startswith("w_") and first["new_warning"] is True
    headers, payload = _received(1)[-1]
    assert outbox.verify("s3cret", headers["X-Retention-Signature"], payload)
    assert not outbox.verify("wrong", headers["X-Retention-Signature"], payload)
    assert headers["X-Retention-Warning-Id"] == first["warning"]
    assert json.loads(payload)["customer_id"] == "C90001"
    assert json.loads(payload)["id"] == first["warning"]
    # The same events again: stored once, no second warning (no new crossing).
    res = client.post("/v1/events", json={"events": events}, headers=auth(keys["admin"]))
    assert not res.json()["rescored"][0].get("new_warning") and len(_received(2, 1.0)) == 1
    listed = client.get("/v1/webhooks/deliveries?customer_id=C90001",
                        headers=auth(keys["admin"])).json()
    assert [d["status"] for d in listed] == ["delivered"] and listed[0]["attempts"] == 1
    assert client.get("/v1/webhooks/deliveries", headers=auth(keys["crm"])).status_code == 403
    res = client.post(f"/v1/webhooks/deliveries/{first['warning']}/redeliver",
                      headers=auth(keys["admin"]))
    assert res.status_code == 200 and res.json()["id"] == first["warning"]
    again = _received(2)
    assert len(again) == 2 and again[-1][0]["X-Retention-Warning-Id"] == first["warning"]


def test_future_events_are_refused_and_move_nobody(api):
    client, keys = api
    before = client.get("/v1/clock", headers=auth(keys["crm"])).json()["as_of"]
    events = [{"customer_id": "C00003", "ts": "2099-01-01T00:00:00Z", "event": "order",
               "amount": 5.0, "event_id": "future-1"}]
    res = client.post("/v1/events", json={"events": events}, headers=auth(keys["admin"]))
    assert res.status_code == 422 and res.json()["rows"] == [0]
    assert "future" in res.json()["title"].lower()
    assert client.get("/v1/clock", headers=auth(keys["crm"])).json()["as_of"] == before
    # Found by the schema fuzzer: a year-424 event broke the rescoring export for everyone.
    ancient = [dict(events[0], ts="0424-01-01T00:00:00Z", event_id="ancient-1")]
    res = client.post("/v1/score", json={"events": ancient}, headers=auth(keys["crm"]))
    assert res.status_code == 422 and res.json()["title"] == "Events too old"
    risk = client.get("/v1/customers/C00003/risk", headers=auth(keys["crm"])).json()
    assert risk["as_of"] == before


def test_batch_limit_is_enforced(api):
    client, keys = api
    services = client.app.state.services
    limit = services.settings.max_batch
    services.settings.max_batch = 2
    try:
        res = client.post("/v1/score", json={"customer_ids": ["C00001", "C00002", "C00003"]},
                          headers=auth(keys["crm"]))
        assert res.status_code == 422 and "limit is 2" in res.json()["detail"]
    finally:
        services.settings.max_batch = limit


def test_agent_page_search_timeline_and_streamed_chat(api):
    client, keys = api
    page = client.get("/")
    assert page.status_code == 200 and "Retention Assistant" in page.text
    hits = client.get("/v1/customers?q=C0000", headers=auth(keys["agent"])).json()
    assert hits and all(h["customer_id"].startswith("C0000") for h in hits)
    assert client.get("/v1/customers?q=C", headers=auth(keys["crm"])).status_code == 403
    events = client.get("/v1/customers/C00001/events", headers=auth(keys["agent"])).json()
    assert events and events[0]["ts"] >= events[-1]["ts"]
    res = client.post("/v1/customers/C00001/chat", headers=auth(keys["agent"]),
                      json={"messages": [{"role": "user", "content": "What did they buy?"}]})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
    kinds = [line.split(":", 1)[1].strip() for line in res.text.splitlines()
             if line.startswith("event:")]
    assert kinds[0] == "token" and kinds[-1] == "done"
    done = json.loads([line for line in res.text.splitlines() if line.startswith("data:")][-1][5:])
    assert done["checked"] and ("[event:" in done["text"] or "[fact:" in done["text"])
    res = client.post("/v1/customers/C00001/chat", headers=auth(keys["agent"]),
                      json={"messages": [{"role": "assistant", "content": "hi"}]})
    assert res.status_code == 422


def test_openapi_lists_the_versioned_routes(api):
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/score", "/v1/customers/{customer_id}/risk", "/v1/events",
                 "/v1/customers/{customer_id}/explanation", "/v1/customers/{customer_id}/chat"):
        assert path in paths
    assert "/v1/reports" in paths and "/v1/reports/{job_id}/files/{name}" in paths


def _wait(client, key: str, job_id: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/reports/{job_id}", headers=auth(key)).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_report_jobs_start_progress_download_and_resume(api):
    import io

    import pandas as pd

    client, keys = api
    assert client.post("/v1/reports", headers=auth(keys["crm"]), json={}).status_code == 403
    assert client.post("/v1/reports", headers=auth(keys["admin"]),
                       json={"top_n": -1}).status_code == 422
    res = client.post("/v1/reports", headers=auth(keys["admin"]), json={"top_n": 2})
    assert res.status_code == 202 and res.json()["status"] in ("queued", "running")
    job = _wait(client, keys["admin"], res.json()["id"])
    assert job["status"] == "done", job
    assert job["done"] == job["total"] > 0
    csv = client.get(job["files"]["csv"], headers=auth(keys["admin"]))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(csv.text))
    assert len(table) == job["total"] and {"probability", "action_ids"} <= set(table.columns)
    html = client.get(job["files"]["html"], headers=auth(keys["admin"]))
    assert html.status_code == 200 and "<html" in html.text.lower()
    assert client.get("/v1/reports/abc123", headers=auth(keys["admin"])).status_code == 404

    # A cutoff before any data: the job fails and says why; its files are not available.
    res = client.post("/v1/reports", headers=auth(keys["admin"]), json={"cutoff": "2000-01-01"})
    failed = _wait(client, keys["admin"], res.json()["id"])
    assert failed["status"] == "failed" and "eligible" in failed["error"]
    gone = client.get(f"/v1/reports/{failed['id']}/files/risk_report.csv",
                      headers=auth(keys["admin"]))
    assert gone.status_code == 409 and "eligible" in gone.json()["detail"]

    # A job left 'running' by a killed service is picked up again at start-up.
    services = client.app.state.services
    with services.Session() as session:
        session.add(db.ReportJobRow(id="feedbeef", status="running", done=0, total=0,
                                    params=json.dumps({"top_n": 0, "lang": "en", "cutoff": None}),
                                    created_at=db.now()))
        session.commit()
    assert services.jobs.resume_unfinished() == ["feedbeef"]
    assert _wait(client, keys["admin"], "feedbeef")["status"] == "done"


def test_report_jobs_are_bounded_per_key_and_cancellable(api):
    client, keys = api
    admin = auth(keys["admin"])
    limit = client.app.state.services.settings.max_report_jobs
    ids = []
    for _ in range(limit):
        res = client.post("/v1/reports", headers=admin, json={"top_n": 30})
        assert res.status_code == 202, res.text
        ids.append(res.json()["id"])
    res = client.post("/v1/reports", headers=admin, json={"top_n": 30})
    assert res.status_code == 429 and res.headers["Retry-After"] == "60"
    for job_id in ids:
        res = client.delete(f"/v1/reports/{job_id}", headers=admin)
        assert res.status_code == 200 and res.json()["status"] in ("cancelled", "done")
    assert client.post("/v1/reports", headers=admin, json={"top_n": 0}).status_code == 202
    assert client.delete("/v1/reports/abc123", headers=admin).status_code == 404
