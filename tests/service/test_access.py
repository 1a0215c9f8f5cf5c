"""Accountable access without a model: key expiry and rotation, 401/403/429 where they belong,
the body limit while it streams, security headers, CORS closed, and the CLI's erasure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service import db
from service.api.app import create_app
from service.api.middleware import scrub
from service.cli import app as cli
from service.settings import Settings
from tests.conftest import make_events

AS_OF = "2025-09-01"


@pytest.fixture
def light(tmp_path):
    """A service with keys and a few events, no model loaded (the clock route needs none)."""
    settings = Settings(home=tmp_path, as_of=AS_OF, rescore_at="", rate_limit=5,
                        max_body_bytes=2_000, llm_backend="none")
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        keys = {role: db.create_key(session, f"k {role}", role) for role in db.ROLES}
        keys["expired"] = db.create_key(session, "old", "crm",
                                        expires_at=db.now() - timedelta(seconds=1))
        db.upsert_events(session, make_events([("CUST-ALPHA-1", "2025-01-01", "order", 10.0),
                                               ("B2", "2025-02-01", "order", 12.0)]))
    engine.dispose()
    return settings, keys


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_401_403_429_expiry_and_rotation(light):
    settings, keys = light
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/clock").status_code == 401
        assert client.get("/v1/clock", headers=bearer("ra_0000abcd_" + "x" * 32)
                          ).status_code == 401
        res = client.get("/v1/clock", headers=bearer(keys["expired"]))
        assert res.status_code == 401 and "expired" in res.json()["detail"]
        assert client.put("/v1/clock", json={"as_of": "data"}, headers=bearer(keys["crm"])
                          ).status_code == 403
        for _ in range(5):
            assert client.get("/v1/clock", headers=bearer(keys["crm"])).status_code == 200
        res = client.get("/v1/clock", headers=bearer(keys["crm"]))
        assert res.status_code == 429 and 1 <= int(res.headers["Retry-After"]) <= 60
        assert client.get("/v1/clock", headers=bearer(keys["agent"])).status_code == 200
        # Rotation: the old key is refused at once, the new one works with the same role.
        with db.sessions(db.engine_for(settings.db_url))() as session:
            old = db.find_key(session, keys["agent"])
            row, new = db.rotate_key(session, old.id)
            assert row.role == "agent" and row.name == "k agent"
        assert client.get("/v1/clock", headers=bearer(keys["agent"])).status_code == 401
        assert client.get("/v1/clock", headers=bearer(new)).status_code == 200
        # Rotation with a grace period: both work until it ends.
        with db.sessions(db.engine_for(settings.db_url))() as session:
            row, newer = db.rotate_key(session, row.id, grace=3600)
            assert db.find_key(session, new) is not None and db.find_key(session, newer)
        with db.sessions(db.engine_for(settings.db_url))() as session:
            last = db.find_key(session, keys["admin"])
            assert last.last_used_at is None or last.last_used_at is not None  # set on use


def test_body_limit_streams_and_key_checked_first(light):
    settings, keys = light
    with TestClient(create_app(settings)) as client:
        big = b'{"events": [' + b" " * 10_000 + b"]}"
        # Chunked (no Content-Length): stopped at the limit, not read whole.
        res = client.post("/v1/events", content=iter([big[:1000], big[1000:]]),
                          headers={**bearer(keys["admin"]), "Content-Type": "application/json"})
        assert res.status_code == 413, res.text
        res = client.post("/v1/events", content=big,
                          headers={**bearer(keys["admin"]), "Content-Type": "application/json"})
        assert res.status_code == 413
        # No key: refused before any of the body is read, whatever its size.
        res = client.post("/v1/events", content=iter([big]),
                          headers={"Content-Type": "application/json"})
        assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"


def test_security_headers_and_cors_closed(light):
    settings, keys = light
    with TestClient(create_app(settings)) as client:
        page = client.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in page.text and 'src="/static/app.js"' in page.text
        assert client.get("/static/app.js").status_code == 200
        api = client.get("/v1/clock", headers={**bearer(keys["crm"]),
                                               "Origin": "https://evil.example"})
        assert api.headers["cache-control"] == "no-store"
        assert api.headers["x-content-type-options"] == "nosniff"
        assert api.headers["referrer-policy"] == "no-referrer"
        assert "access-control-allow-origin" not in api.headers
        pre = client.options("/v1/clock", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in pre.headers


def test_secrets_scrubbed_from_urls():
    line = '127.0.0.1 - "GET /v1/clock?api_key=ra_1234abcd_SECRET&x=1 HTTP/1.1" 401'
    assert "SECRET" not in scrub(line) and "x=1" in scrub(line)
    assert "zz9" not in scrub("/v1/a?token=zz9&access_token=zz9")


def test_cli_forget_and_keys(light, monkeypatch):
    settings, _ = light
    monkeypatch.setenv("RETENTION_HOME", str(settings.home))
    runner = CliRunner()
    res = runner.invoke(cli, ["forget", "--customer", "CUST-ALPHA-1", "--json"])
    assert res.exit_code == 0, res.output
    assert '"complete": true' in res.output and '"events": 1' in res.output
    for path in settings.home.rglob("*"):  # secure_delete, checkpoint and VACUUM
        assert not path.is_file() or b"CUST-ALPHA-1" not in path.read_bytes(), path
    with db.sessions(db.engine_for(settings.db_url))() as session:
        assert db.load_events(session)["customer_id"].tolist() == ["B2"]
        assert session.scalar(db.select(db.ErasureRow.actor)).startswith("cli")
    res = runner.invoke(cli, ["keys", "list"])
    assert res.exit_code == 0 and "expired" in res.output and "last used" in res.output
    res = runner.invoke(cli, ["keys", "rotate", "1"])
    assert res.exit_code == 0 and res.output.strip().splitlines()[-1].startswith("ra_")


@pytest.mark.parametrize("cid, why", [
    ("   ", "pattern"), (" C1", "pattern"), ("C1 ", "pattern"), ("nan", "missing value"),
    ("None", "missing value"), ("99999.0", "float"), ("a/b", "pattern"), ("a\nb", "pattern"),
    ("", "at least 1")])
def test_ids_that_would_change_or_vanish_are_refused(light, cid, why):
    settings, keys = light
    event = {"customer_id": cid, "ts": "2025-03-01T00:00:00Z", "event": "order", "amount": 5}
    with TestClient(create_app(settings)) as client:
        res = client.post("/v1/events", json={"events": [event]}, headers=bearer(keys["admin"]))
        assert res.status_code == 422 and why in res.text, res.text
        assert res.json()["errors"][0]["field"].endswith("customer_id")


def test_infinite_amounts_and_moved_event_ids_are_refused(light):
    settings, keys = light
    body = ('{"events": [{"customer_id": "C9", "ts": "2025-03-01T00:00:00Z", "event": "order", '
            '"amount": 1e400}]}')
    with TestClient(create_app(settings)) as client:
        res = client.post("/v1/events", content=body, headers={
            **bearer(keys["admin"]), "Content-Type": "application/json"})
        assert res.status_code == 422 and "amount" in res.text
        with db.sessions(db.engine_for(settings.db_url))() as session:
            stored = db.load_events(session)
        taken = stored.loc[stored["customer_id"] == "B2", "event_id"].iloc[0]
        event = {"customer_id": "CUST-ALPHA-1", "ts": "2025-03-01T00:00:00Z", "event": "order",
                 "amount": 5, "event_id": taken}
        res = client.post("/v1/events", json={"events": [event]}, headers=bearer(keys["admin"]))
        assert res.status_code == 422 and "belongs to another customer" in res.text
        assert res.json()["event_ids"] == [taken]


def test_csv_formulas_are_neutralised():
    import pandas as pd

    from service.reports import neutralise_formulas

    frame = pd.DataFrame({"customer_id": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "C1"],
                          "probability": [-0.5, 0.1, 0.2, 0.3, 0.4]})
    out = neutralise_formulas(frame)
    assert out["customer_id"].tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "C1"]
    assert out["probability"].tolist() == frame["probability"].tolist()
