"""`retention demo-data --campaign` then `retention uplift`: effects with intervals, the Qini
coefficient on held-out customers, and a recommendation for every eligible customer."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


def test_campaign_then_uplift_json_and_recommendations(tmp_path):
    res = runner.invoke(app, ["demo-data", "--customers", "900", "--seed", "2", "--days", "400",
                              "--campaign", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in ("events", "actions", "campaign_truth"):
        assert (tmp_path / f"{name}.parquet").exists()
    recs = tmp_path / "recs.csv"
    res = runner.invoke(app, ["uplift", "--events", str(tmp_path / "events.parquet"),
                              "--actions", str(tmp_path / "actions.parquet"), "--horizon", "90",
                              "--min-sample", "30", "--json", "--recommendations", str(recs),
                              "--as-of", "2025-02-01"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report["effects"]) == 8 and all(e["causal"] for e in report["effects"])
    for e in report["effects"]:
        assert e["ci_low"] <= e["uplift"] <= e["ci_high"] and e["n_holdout"] > 0
    assert report["measured_actions"] and set(report["qini"]) <= set(report["measured_actions"])
    segments = [s for e in report["effects"] for s in e["segments"]]
    assert segments and all(s["segment"].endswith("risk") and s["n"] >= 15 for s in segments)
    assert {"none", "learned", "playbook"} <= set(report["policy_value"])
    table = pd.read_csv(recs)
    assert report["recommendations"]["rows"] == len(table) > 0
    assert set(table.columns) >= {"customer_id", "action_id", "expected_uplift", "as_of"}
    actions = pd.read_parquet(tmp_path / "actions.parquet")
    assert not set(table["customer_id"]) <= set(actions["customer_id"])  # not only the campaign
    # The readable table.
    res = runner.invoke(app, ["uplift", "--events", str(tmp_path / "events.parquet"),
                              "--actions", str(tmp_path / "actions.parquet"),
                              "--min-sample", "30"])
    assert res.exit_code == 0 and "uplift" in res.stdout and "holdout" in res.stdout


def test_bad_actions_file_is_one_clear_line(tmp_path):
    runner.invoke(app, ["demo-data", "--customers", "50", "--days", "300", "-o", str(tmp_path)])
    bad = tmp_path / "actions.csv"
    bad.write_text("customer_id,ts,action_id,source\nC00001,2024-05-01,free_car,agent\n")
    res = runner.invoke(app, ["uplift", "--events", str(tmp_path / "events.parquet"),
                              "--actions", str(bad)])
    assert res.exit_code == 2
    assert "action_id" in res.output and "line(s): 2" in res.output and "Traceback" not in res.output


def test_load_stores_events_and_actions_in_the_service(tmp_path, monkeypatch):
    from service import db

    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    runner.invoke(app, ["demo-data", "--customers", "300", "--days", "300", "--campaign",
                        "-o", str(tmp_path)])
    res = runner.invoke(app, ["load", "--events", str(tmp_path / "events.parquet"),
                              "--actions", str(tmp_path / "actions.parquet")])
    assert res.exit_code == 0, res.output
    engine = db.engine_for(f"sqlite:///{tmp_path / 'home' / 'retention.db'}")
    with db.sessions(engine)() as session:
        stored = db.load_actions(session)
    assert len(stored) == len(pd.read_parquet(tmp_path / "actions.parquet"))
    again = runner.invoke(app, ["load", "--actions", str(tmp_path / "actions.parquet")])
    assert again.exit_code == 0
    with db.sessions(engine)() as session:
        assert db.count_actions(session) == len(stored)  # loading twice changes nothing
