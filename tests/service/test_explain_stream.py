"""What an agent sees first never waits for the LLM: the explanation stream sends the
deterministic reasons at once, then the LLM's checked wording; finished explanations are cached
by snapshot, and a new event is a miss."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from service import db
from service.api.app import create_app
from service.settings import Settings
from tests.assistant.fakes import ScriptedChat, grounded_reply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory, trained_model, synthetic):
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, model_dir=trained_model, llm_backend="none", rescore_at="",
                        as_of="2025-09-01", holdout=0.0)
    with db.sessions(db.engine_for(settings.db_url))() as session:
        db.upsert_events(session, synthetic[0][synthetic[0]["customer_id"] < "C00030"])
        key = db.create_key(session, "agent", "agent")
        admin = db.create_key(session, "admin", "admin")
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {admin}"}


def frames(client, url, headers) -> list[tuple[str, dict, float]]:
    """(event, data, seconds since the request) for each server-sent event."""
    started = time.perf_counter()
    out = []
    with client.stream("GET", url, headers=headers) as res:
        assert res.status_code == 200, res.read()
        kind = None
        for line in res.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind:
                out.append((kind, json.loads(line.split(":", 1)[1]), time.perf_counter() - started))
    return out


def use_llm(client, llm, backend="scripted"):
    helper = client.app.state.services.assistant
    helper.llm, helper.backend = llm, backend


def test_deterministic_first_then_the_llms_checked_wording(api):
    client, agent, _ = api

    def slow(messages):
        time.sleep(1.5)
        return grounded_reply(messages, prefix="The LLM notes")

    use_llm(client, ScriptedChat(slow))
    try:
        got = frames(client, "/v1/customers/C00003/explanation/stream?lang=en", agent)
    finally:
        use_llm(client, None, "none")
    kinds = [k for k, _, _ in got]
    assert kinds == ["deterministic", "final", "done"], kinds
    first, final = got[0][1]["explanation"], got[1][1]["explanation"]
    assert got[0][2] < got[1][2] - 1.0  # the first frame did not wait for the LLM
    assert first["backend"] == "none" and first["reasons"]
    assert final["backend"] == "scripted" and final["reasons"][0]["text"].startswith(
        "The LLM notes") or final["added"]
    assert first["risk"] == final["risk"] and first["evidence"] == final["evidence"]


def test_an_llm_that_misses_the_top_driver_gets_its_reason_added(api):
    client, agent, _ = api
    use_llm(client, ScriptedChat(lambda m: grounded_reply(m, skip_top=True)))
    try:
        x = client.get("/v1/customers/C00004/explanation?lang=en", headers=agent).json()
    finally:
        use_llm(client, None, "none")
    if x["coverage"]:
        cited = {e for r in x["reasons"] for e in r["evidence"]}
        assert set(x["coverage"]) <= cited
        assert x["backend"] == "scripted" and x["added"], x
        assert x["reasons"][0]["evidence"] == [x["coverage"][0]]


def test_a_second_look_is_cached_and_a_new_event_is_a_miss(api):
    client, agent, admin = api
    url = "/v1/customers/C00005/explanation/stream?lang=zh"
    first = frames(client, url, agent)
    assert [k for k, _, _ in first] == ["deterministic", "final", "done"]
    again = frames(client, url, agent)
    assert [k for k, _, _ in again] == ["final", "done"] and again[0][1]["cached"] is True
    assert again[0][1]["explanation"] == first[1][1]["explanation"]
    started = time.perf_counter()
    res = client.get("/v1/customers/C00005/explanation?lang=zh", headers=agent)
    assert res.status_code == 200 and time.perf_counter() - started < 5
    english = frames(client, url.replace("zh", "en"), agent)  # another language: a miss
    assert english[0][0] == "deterministic"
    new = {"customer_id": "C00005", "ts": "2025-08-20T10:00:00Z", "event": "cancel",
           "text": "Please close my account", "event_id": "cancel-c5"}
    assert client.post("/v1/events", json={"events": [new]}, headers=admin).status_code == 200
    after = frames(client, url, agent)
    assert after[0][0] == "deterministic"  # the snapshot changed: recomputed, not cached
    x = after[1][1]["explanation"]
    assert x != first[1][1]["explanation"]
    cancel = [e for e in x["evidence"] if "event:cancel-c5" in [e["id"], *e["events"]]]
    assert all("要求注销账户" in e["text"] for e in cancel)  # worded as a reason, in Chinese
    cache = client.app.state.services.assistant.cache
    assert cache.hits >= 2 and len(cache) >= 3


def test_an_unavailable_llm_keeps_the_deterministic_wording(api):
    from assistant.llm import LLMUnavailable

    client, agent, _ = api

    def broken(_messages):
        raise LLMUnavailable("the local model file is missing")

    use_llm(client, ScriptedChat(broken))
    try:
        got = frames(client, "/v1/customers/C00006/explanation/stream", agent)
    finally:
        use_llm(client, None, "none")
    assert [k for k, _, _ in got] == ["deterministic", "kept", "done"]
    assert "unavailable" in got[1][1]["reason"]


def test_the_daily_rescoring_precomputes_the_riskiest_explanations(api):
    client, agent, admin = api
    services = client.app.state.services
    services.settings.precompute_top, services.settings.precompute_langs = 3, "en,zh"
    try:
        before = len(services.assistant.cache)
        res = client.post("/v1/rescore?wait=true", headers=admin)
        assert res.status_code == 200, res.text
    finally:
        services.settings.precompute_top = 0
    assert len(services.assistant.cache) >= before + 1
    top = client.get("/v1/customers?q=C000&limit=100", headers=agent).json()
    riskiest = max((h for h in top if h["probability"] is not None),
                   key=lambda h: h["probability"])["customer_id"]
    got = frames(client, f"/v1/customers/{riskiest}/explanation/stream?lang=zh", agent)
    assert [k for k, _, _ in got] == ["final", "done"] and got[0][1]["cached"] is True
