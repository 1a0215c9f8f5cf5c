"""Erasure through the real service, checked at byte level: after DELETE /v1/customers/{id} no
file under the home (SQLite database, Chroma store, reports, event files) holds the customer's id
or their words; everyone else is intact and scores the same. On PostgreSQL too when a server is
at hand (``local_postgres``)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from finetune.contract import validate_events
from service import db
from service.api.app import create_app
from service.erasure import customer_hash, drop_erased
from service.settings import Settings

pytestmark = pytest.mark.slow

PLANT = "ZQ-ERASE-0001"
WORDS = ["Zebra-quartz parcel never reached my flat", "Kumquat-velvet refund still missing"]
AS_OF = "2025-09-01"


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def planted_events(synthetic) -> pd.DataFrame:
    """The first 30 synthetic customers and one more whose history holds unique words."""
    events = synthetic[0]
    others = events[events["customer_id"] < "C00030"]
    mine = events[events["customer_id"] == "C00003"].copy()
    mine["customer_id"] = PLANT
    mine["event_id"] = [f"zq{i:04d}" for i in range(len(mine))]
    last = mine["ts"].max()
    extra = pd.DataFrame([
        {"customer_id": PLANT, "ts": last + pd.Timedelta(days=1), "event": "review",
         "rating": 1.0, "text": WORDS[0], "event_id": "zq-r1"},
        {"customer_id": PLANT, "ts": last + pd.Timedelta(days=2), "event": "ticket",
         "text": WORDS[1], "event_id": "zq-t1"}])
    frame = pd.concat([others, mine, extra], ignore_index=True)
    return validate_events(frame, "test")[0]


def holds(path: Path, needles: list[bytes]) -> bool:
    """Raw bytes, and decoded content for compressed formats (an independent check)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data += gzip.decompress(data)
    if path.suffix == ".parquet":
        data += pd.read_parquet(path).to_csv().encode()
    return any(n in data for n in needles)


def run_service(settings: Settings, events: pd.DataFrame, tmp_path: Path) -> dict:
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, events)
        keys = {role: db.create_key(session, f"test {role}", role) for role in db.ROLES}
    engine.dispose()
    # An events file under the home, as the demo leaves one.
    (settings.home / "demo").mkdir(parents=True, exist_ok=True)
    events.to_parquet(settings.home / "demo" / "events.parquet")
    events.to_csv(settings.home / "demo" / "events.csv.gz", index=False)
    return keys


def exercise(client: TestClient, keys: dict) -> None:
    """Touch every place that keeps customer data: scores and history, the Chroma store and
    the explanation cache, an action, the access log, a finished report."""
    admin, agent = auth(keys["admin"]), auth(keys["agent"])
    assert client.post("/v1/rescore?wait=true", headers=admin).status_code == 200
    for cid in (PLANT, "C00002"):
        res = client.get(f"/v1/customers/{cid}/explanation", headers=agent)
        assert res.status_code == 200, res.text
        assert client.get(f"/v1/customers/{cid}/events", headers=agent).status_code == 200
    res = client.post(f"/v1/customers/{PLANT}/actions", headers=agent,
                      json={"action_id": "support_callback", "channel": "phone"})
    assert res.status_code == 201, res.text
    job = client.post("/v1/reports", headers=admin, json={"top_n": 40}).json()
    for _ in range(600):
        state = client.get(f"/v1/reports/{job['id']}", headers=admin).json()
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    assert state["status"] == "done", state


def check_erasure(settings: Settings, events: pd.DataFrame, tmp_path: Path) -> dict:
    keys = run_service(settings, events, tmp_path)
    needles = [PLANT.encode()] + [w.encode() for w in WORDS]
    with TestClient(create_app(settings)) as client:
        exercise(client, keys)
        before = [str(p) for p in settings.home.rglob("*") if p.is_file() and holds(p, needles)]
        assert any("chroma" in p for p in before) and any("risk_report" in p for p in before)
        with db.sessions(db.engine_for(settings.db_url))() as session:
            scores = {r.customer_id: r.probability for r in session.scalars(select(db.ScoreRow))}
        assert client.delete(f"/v1/customers/{PLANT}", headers=auth(keys["agent"])
                             ).status_code == 403
        res = client.delete(f"/v1/customers/{PLANT}", headers=auth(keys["admin"]))
        assert res.status_code == 200, res.text
        report = res.json()
        assert report["complete"] and report["remaining"] == [], (report["remaining"], report["files_removed"], report["files_rewritten"])
        assert report["rows"]["events"] == (events["customer_id"] == PLANT).sum()
        assert report["rows"]["actions"] == 1 and report["documents"] >= 2
        assert report["cached"] >= 1
        # No byte of the customer under the home: the database, Chroma, reports, event files.
        left = [str(p) for p in settings.home.rglob("*") if p.is_file() and holds(p, needles)]
        assert left == []
        # Gone from every answer; everyone else intact, with the same scores.
        assert client.get(f"/v1/customers/{PLANT}/risk", headers=auth(keys["crm"])
                          ).status_code == 404
        assert client.delete(f"/v1/customers/{PLANT}", headers=auth(keys["admin"])
                             ).status_code == 404
        res = client.get("/v1/customers/C00002/explanation", headers=auth(keys["agent"]))
        assert res.status_code == 200
        others = sorted(c for c in scores if c != PLANT)[:5]
        res = client.post("/v1/score", json={"customer_ids": others}, headers=auth(keys["crm"]))
        again = {s["customer_id"]: s["probability"] for s in res.json()["scores"]}
        assert len(again) == len(others)
        assert again == pytest.approx({c: scores[c] for c in again}, abs=1e-6)
        kept = pd.read_parquet(settings.home / "demo" / "events.parquet")
        assert len(kept) == (events["customer_id"] != PLANT).sum()
        csv = pd.read_parquet(Path(settings.home / "reports").rglob("risk_report.parquet")
                              .__next__())
        assert PLANT not in set(csv["customer_id"]) and "C00002" in set(csv["customer_id"])
        # The erasure is recorded by hash and by whom; the access log keeps the reads.
        audit = client.get("/v1/audit", headers=auth(keys["admin"])).json()
        assert any(a["customer_id"] == f"erased:{customer_hash(PLANT)[:16]}" for a in audit)
        assert any(a["customer_id"] == "C00002" and a["key_name"] == "test agent"
                   for a in audit)
        assert {a["customer_id"] for a in audit if a["route"] == "/v1/score"} == set(others)
        # Reads of the erased id after the erasure are logged under its hash, not the id.
        left = [str(p) for p in settings.home.rglob("*") if p.is_file() and holds(p, needles)]
        assert left == []
    with db.sessions(db.engine_for(settings.db_url))() as session:
        record = session.get(db.ErasureRow, customer_hash(PLANT))
        assert record is not None and "test admin" in record.actor
        assert PLANT not in record.summary
    return report


def test_erasure_sqlite(tmp_path, trained_model, synthetic):
    settings = Settings(home=tmp_path / "home", model_dir=trained_model, llm_backend="none",
                        rescore_at="", as_of=AS_OF, rate_limit=0)
    check_erasure(settings, planted_events(synthetic), tmp_path)


def test_erasure_postgres(tmp_path, trained_model, synthetic, local_postgres):
    """PostgreSQL: rows deleted and the tables rewritten by VACUUM FULL, so no table file of
    the database holds the customer (its WAL segments still may, until they are recycled:
    docs/privacy.md)."""
    url, data_dir = local_postgres
    settings = Settings(home=tmp_path / "home", model_dir=trained_model, llm_backend="none",
                        rescore_at="", as_of=AS_OF, rate_limit=0, database_url=url)
    check_erasure(settings, planted_events(synthetic), tmp_path)
    engine = db.engine_for(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()
    tables = [p for p in (data_dir / "base").rglob("*") if p.is_file()]
    assert tables and not [p for p in tables if PLANT.encode() in p.read_bytes()]


def test_train_drops_erased_customers(synthetic):
    events = planted_events(synthetic)
    kept, n = drop_erased(events, {customer_hash(PLANT)})
    assert n == 1 and PLANT not in set(kept["customer_id"]) and len(kept) == \
        (events["customer_id"] != PLANT).sum()
    assert drop_erased(events, set())[1] == 0


SECRETS = ["7946 0958", "jane.roe@example.org", "4111 1111 1111 1111", "11010519491231002X",
           "建国路88号", "GB82 WEST 1234 5698 7654 32"]
PLANTED = ("Call me on +44 20 7946 0958 or jane.roe@example.org; card 4111 1111 1111 1111, "
           "身份证 11010519491231002X, 寄到北京市朝阳区建国路88号, refund to "
           "GB82 WEST 1234 5698 7654 32. The parcel never arrived.")


def test_planted_secret_reaches_no_output(tmp_path, trained_model, synthetic, caplog):
    """A review full of personal data enters through the API (the data edge) and is looked at
    through every path: API answers, streams and chat, the LLM's prompts, reports (HTML, CSV,
    Parquet), the access log, the service's logs and every file under the home."""
    import json
    import logging

    from tests.assistant.fakes import ScriptedChat, evidence_of, grounded_reply

    caplog.set_level(logging.DEBUG)
    settings = Settings(home=tmp_path / "home", model_dir=trained_model, llm_backend="none",
                        rescore_at="", as_of=AS_OF, rate_limit=0)
    events = synthetic[0][synthetic[0]["customer_id"] < "C00030"]
    keys = run_service(settings, events, tmp_path)
    admin, agent, crm = (auth(keys[r]) for r in ("admin", "agent", "crm"))
    seen: list[str] = []

    def respond(messages) -> str:
        if any("effect" in item for item in evidence_of(messages)):
            return grounded_reply(messages)
        return "They reported a parcel that never arrived (event:x)."

    with TestClient(create_app(settings)) as client:
        review = {"customer_id": "C00002", "ts": "2025-08-20T10:00:00Z", "event": "review",
                  "rating": 1, "text": PLANTED}
        res = client.post("/v1/events", json={"events": [review]}, headers=admin)
        assert res.status_code == 200, res.text
        llm = ScriptedChat(respond)
        helper = client.app.state.services.assistant
        helper.llm, helper.backend = llm, "scripted"
        for url in ("/v1/customers/C00002/risk", "/v1/customers/C00002/explanation",
                    "/v1/customers/C00002/explanation?lang=zh",
                    "/v1/customers/C00002/explanation/stream", "/v1/customers/C00002/events",
                    "/v1/customers?q=C0000", "/v1/audit"):
            res = client.get(url, headers=admin if "audit" in url else agent)
            assert res.status_code == 200, (url, res.text)
            seen.append(res.text)
        res = client.post("/v1/customers/C00002/chat", headers=agent, json={
            "messages": [{"role": "user", "content": "What did they write in their review?"}]})
        seen.append(res.text)
        seen.append(client.post("/v1/score", headers=crm, json={"events": [
            {**review, "customer_id": "inline1"},
            {"customer_id": "inline1", "ts": "2025-01-05T10:00:00Z", "event": "order",
             "amount": 20.0}]}).text)
        job = client.post("/v1/reports", headers=admin, json={"top_n": 40}).json()
        for _ in range(600):
            state = client.get(f"/v1/reports/{job['id']}", headers=admin).json()
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert state["status"] == "done", state
        for name in ("risk_report.html", "risk_report.csv"):
            seen.append(client.get(f"/v1/reports/{job['id']}/files/{name}", headers=admin).text)
        prompts = [str(m.content) for call in llm.calls for m in call]
    assert llm.calls, "the LLM was never asked: its prompts were not walked"
    assert any("[email]" in p and "[card]" in p for p in prompts)  # the review reached it
    outputs = {"api": "\n".join(seen), "prompts": "\n".join(prompts),
               "logs": "\n".join(r.getMessage() for r in caplog.records)}
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text and json.dumps(secret)[1:-1] not in text, (where, secret)
    files = [p for p in settings.home.rglob("*") if p.is_file()]
    leaks = [(str(p), s) for p in files for s in SECRETS if holds(p, [s.encode()])]
    assert files and leaks == []
