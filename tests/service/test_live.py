"""The live service keeps time, on a real small model: one as-of date for every answer, equal to
offline ``retention score --precision fp32 --cutoff AS_OF`` whatever the batch; rescoring
everyone (idempotent, resumable, warning about customers who only went silent); the model
switched without a restart; scoring without an LLM."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from finetune.artifacts import set_current
from finetune.loaders import write_events
from service import db
from service.api import services as services_module
from service.api.app import create_app
from service.cli import app as cli
from service.rescore import rescore_all
from service.scores import WarnRule
from service.settings import Settings

pytestmark = pytest.mark.slow
AS_OF = "2025-07-01"  # a week after the synthetic data ends (2025-06-24): everyone is silent
LATER = "2025-10-01"
runner = CliRunner()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def subset(synthetic) -> pd.DataFrame:
    events = synthetic[0]
    return events[events["customer_id"] < "C00120"].reset_index(drop=True)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory, subset) -> Path:
    path = tmp_path_factory.mktemp("live") / "events.parquet"
    write_events(subset, path)
    return path


def offline(model_root: Path, events_file: Path, out: Path, as_of: str) -> pd.Series:
    """What an analyst gets from the CLI at that date."""
    res = runner.invoke(cli, ["score", "--events", str(events_file), "--out", str(out),
                              "--model", str(model_root), "--cutoff", as_of,
                              "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    return pd.read_parquet(out).set_index("customer_id")["probability"]


@pytest.fixture(scope="module")
def reference(trained_model, events_file, tmp_path_factory) -> pd.Series:
    return offline(trained_model, events_file, tmp_path_factory.mktemp("ref") / "s.parquet",
                   AS_OF)


def _settings(home: Path, model: Path, **extra) -> Settings:
    return Settings(home=home, model_dir=model, llm_backend="none", rescore_at="",
                    as_of=AS_OF, **extra)


@pytest.fixture(scope="module")
def live(tmp_path_factory, trained_model, subset):
    settings = _settings(tmp_path_factory.mktemp("home"), trained_model, clock_control=True)
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, subset)
        keys = {role: db.create_key(session, f"test {role}", role) for role in db.ROLES}
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield client, keys


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_one_clock_api_equals_offline_for_any_batch_split(live, reference, data):
    client, keys = live
    ids = data.draw(st.lists(st.sampled_from(sorted(reference.index)), min_size=1, max_size=12,
                             unique=True))
    cut = data.draw(st.integers(0, len(ids)))
    got: dict[str, float] = {}
    for part in (ids[:cut], ids[cut:]):
        if not part:
            continue
        body = client.post("/v1/score", json={"customer_ids": part},
                           headers=auth(keys["crm"])).json()
        assert body["as_of"] == AS_OF and not body["unknown"]
        got.update({s["customer_id"]: s["probability"] for s in body["scores"]})
        assert {s["as_of"] for s in body["scores"]} == {AS_OF}
    for cid in ids:
        assert got[cid] == pytest.approx(reference[cid], abs=1e-6), cid
    single = client.get(f"/v1/customers/{ids[0]}/risk", headers=auth(keys["crm"])).json()
    assert single["as_of"] == AS_OF
    assert single["probability"] == pytest.approx(reference[ids[0]], abs=1e-6)


def test_inline_histories_are_scored_at_the_service_date(live, subset, reference):
    client, keys = live
    cid = sorted(reference.index)[3]
    mine = subset[subset["customer_id"] == cid].astype(object)
    mine = mine.where(mine.notna(), None)
    rows = [{**r, "ts": r["ts"].isoformat(), "event": str(r["event"])}
            for r in mine.to_dict("records")]
    alone = client.post("/v1/score", json={"events": rows}, headers=auth(keys["crm"])).json()
    assert alone["scores"][0]["probability"] == pytest.approx(reference[cid], abs=1e-6)


def test_rescoring_is_idempotent_and_warns_about_silence(live, trained_model, events_file,
                                                         tmp_path):
    client, keys = live
    services = client.app.state.services
    p1 = offline(trained_model, events_file, tmp_path / "a.parquet", AS_OF)
    p2 = offline(trained_model, events_file, tmp_path / "b.parquet", LATER)
    both = pd.concat({"p1": p1, "p2": p2}, axis=1).dropna()
    rising = both[both["p2"] > both["p1"]]
    assert len(rising), "three months of silence should raise someone's risk"
    widest = (rising["p2"] - rising["p1"]).idxmax()
    threshold = float((rising.loc[widest, "p1"] + rising.loc[widest, "p2"]) / 2)
    services.settings.risk_threshold = threshold

    res = client.post("/v1/rescore?wait=true", headers=auth(keys["admin"]))
    assert res.status_code == 200 and res.json()["status"] == "done"
    first = res.json()
    assert first["customers"] == len(p1)
    again = client.post("/v1/rescore?wait=true", headers=auth(keys["admin"])).json()
    assert again == first  # the same date twice: nothing changed, nobody warned twice

    assert client.put("/v1/clock", json={"as_of": LATER}, headers=auth(keys["admin"])
                      ).json()["as_of"] == LATER
    assert client.put("/v1/clock", json={"as_of": LATER}, headers=auth(keys["crm"])
                      ).status_code == 403
    later = client.post("/v1/rescore?wait=true", headers=auth(keys["admin"])).json()
    crossed = both[(both["p1"] < threshold) & (both["p2"] >= threshold)]
    with services.Session() as session:
        warned = {r.customer_id for r in session.scalars(select(db.WarningRow).where(
            db.WarningRow.as_of == LATER))}
        stored = {r.customer_id: r.probability for r in session.scalars(
            select(db.ScoreHistoryRow).where(db.ScoreHistoryRow.as_of == LATER))}
    # No event arrived between the two dates: every one of these warnings is about silence.
    assert widest in warned and warned == set(crossed.index)
    assert later["warnings"] == len(warned)
    assert max(abs(stored[c] - p2[c]) for c in p2.index) <= 1e-6
    risk = client.get(f"/v1/customers/{widest}/risk", headers=auth(keys["crm"])).json()
    assert risk["as_of"] == LATER and risk["previous"] == pytest.approx(p1[widest], abs=1e-6)
    assert [t["as_of"] for t in risk["trend"]] == [AS_OF, LATER]
    runs = client.get("/v1/rescore/runs", headers=auth(keys["admin"])).json()
    assert [r["as_of"] for r in runs] == [LATER, AS_OF]

    # The report at the later date reads the history: who entered the high band since.
    job = client.post("/v1/reports", json={"top_n": 0}, headers=auth(keys["admin"])).json()
    assert job["params"]["cutoff"] == LATER
    for _ in range(600):
        job = client.get(f"/v1/reports/{job['id']}", headers=auth(keys["admin"])).json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    assert job["status"] == "done", job
    import io

    table = pd.read_csv(io.StringIO(client.get(job["files"]["csv"],
                                               headers=auth(keys["admin"])).text))
    high = services.scorer.bands.high
    entered = set(both[(both["p1"] < high) & (both["p2"] >= high)].index)
    assert set(table.loc[table["newly_at_risk"], "customer_id"]) == entered
    html = client.get(job["files"]["html"], headers=auth(keys["admin"])).text
    assert "Newly at risk" in html
    client.put("/v1/clock", json={"as_of": AS_OF}, headers=auth(keys["admin"]))


def test_rescoring_resumes_where_it_stopped(trained_model, subset, events_file, tmp_path):
    from assistant.scoring import Scorer
    from finetune.artifacts import TrainedModel

    engine = db.engine_for(f"sqlite:///{tmp_path / 'r.db'}")
    Session = db.sessions(engine)
    with Session() as session:
        db.upsert_events(session, subset)
    scorer = Scorer(TrainedModel.load(trained_model))
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(InterruptedError):
        rescore_all(Session, scorer, as_of, WarnRule(0.5, False), tmp_path / "work",
                    chunk_customers=16, should_stop=stop_after_two)
    with Session() as session:
        assert session.get(db.RescoreRunRow, AS_OF).status == "failed"
        partial = session.query(db.ScoreHistoryRow).count()
    summary = rescore_all(Session, scorer, as_of, WarnRule(0.5, False), tmp_path / "work",
                          chunk_customers=16)
    reference = offline(trained_model, events_file, tmp_path / "o.parquet", AS_OF)
    with Session() as session:
        stored = {r.customer_id: r.probability for r in session.scalars(
            select(db.ScoreHistoryRow))}
    assert summary.resumed_partitions == 2 and 0 < partial < len(reference)
    assert summary.customers == len(reference) == len(stored)
    assert max(abs(stored[c] - reference[c]) for c in reference.index) <= 1e-6
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    engine.dispose()


def test_rescore_cli_twice(trained_model, subset, tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path))
    monkeypatch.setenv("RETENTION_MODEL_DIR", str(trained_model))
    engine = db.engine_for(f"sqlite:///{tmp_path / 'retention.db'}")
    with db.sessions(engine)() as session:
        db.upsert_events(session, subset)
    engine.dispose()
    res = runner.invoke(cli, ["rescore", "--as-of", AS_OF, "--json"])
    assert res.exit_code == 0, res.output
    import json

    first = json.loads(res.stdout)
    assert first["as_of"] == AS_OF and first["customers"] > 0 and not first["skipped"]
    res = runner.invoke(cli, ["rescore", "--as-of", AS_OF])
    assert res.exit_code == 0 and "nothing changed" in res.output
    res = runner.invoke(cli, ["rescore", "--as-of", "last tuesday"])
    assert res.exit_code == 2 and "as-of" in res.output


def test_model_switches_without_restart(trained_model, subset, tmp_path, monkeypatch):
    monkeypatch.setattr(services_module, "MODEL_CHECK_S", 0.0)
    root = tmp_path / "models"
    shutil.copytree(trained_model, root)
    (root / "CURRENT").write_text("v0001\n")
    shutil.copytree(root / "versions" / "v0001", root / "versions" / "v0002")
    settings = _settings(tmp_path / "home", root)
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, subset[subset["customer_id"] < "C00010"])
        key = db.create_key(session, "crm", "crm")
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        ask = lambda: client.post("/v1/score", json={"customer_ids": ["C00001"]},
                                  headers=auth(key)).json()
        assert ask()["model_version"] == "v0001"
        set_current(root, "v0002")  # what `retention models use` does
        assert ask()["model_version"] == "v0002"
        (root / "CURRENT").write_text("v0001\n")  # a rollback
        time.sleep(0.01)
        assert ask()["model_version"] == "v0001"
        assert client.get("/readyz").json()["model_version"] == "v0001"


def test_scoring_works_without_an_llm(trained_model, subset, tmp_path):
    settings = Settings(home=tmp_path, model_dir=trained_model, llm_backend="local",
                        llm_model_path=tmp_path / "missing.gguf", rescore_at="", as_of=AS_OF)
    engine = db.engine_for(settings.db_url)
    with db.sessions(engine)() as session:
        db.upsert_events(session, subset[subset["customer_id"] < "C00010"])
        keys = {role: db.create_key(session, role, role) for role in ("crm", "agent")}
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/customers/C00001/risk", headers=auth(keys["crm"])
                          ).status_code == 200
        assert client.post("/v1/score", json={"customer_ids": ["C00001"]},
                           headers=auth(keys["crm"])).status_code == 200
        res = client.get("/v1/customers/C00001/explanation", headers=auth(keys["agent"]))
        assert res.status_code == 503 and res.headers["content-type"] == (
            "application/problem+json")
        assert "LLM" in res.json()["title"] and "missing.gguf" in res.json()["detail"]
        res = client.post("/v1/customers/C00001/chat", headers=auth(keys["agent"]),
                          json={"messages": [{"role": "user", "content": "why?"}]})
        assert res.status_code == 503 and "LLM" in res.json()["title"]
