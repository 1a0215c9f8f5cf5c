"""The CLI end to end on small synthetic data: JSON contract, readable table, clean errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


def test_demo_data_then_evaluate_json(tmp_path):
    res = runner.invoke(app, ["demo-data", "--customers", "300", "--seed", "3", "--days", "500",
                              "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "events.parquet").exists() and (tmp_path / "customers.parquet").exists()
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--horizon", "60", "--models", "logreg,recency", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("dataset", "horizon", "test_cutoff", "n_train", "n_test", "test_churn_rate"):
        assert key in result
    assert result["horizon"] == 60 and set(result["models"]) == {"logreg", "recency"}
    for metrics in result["models"].values():
        assert set(metrics) >= {"auc", "pr_auc", "brier", "ece", "lift10", "recall10", "f1"}


def test_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,ts,event\nx,2024-01-01,order\ny,2024-01-02,purchase\n")
    res = runner.invoke(app, ["evaluate", "--events", str(bad)])
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "'event'" in res.output and "line(s): 3" in res.output
    assert "Traceback" not in res.output


def test_unknown_model_and_missing_source():
    res = runner.invoke(app, ["evaluate", "--events", "x.csv", "--models", "magic"])
    assert res.exit_code == 2 and "unknown model 'magic'" in res.output
    res = runner.invoke(app, ["evaluate"])
    assert res.exit_code == 2 and "--events" in res.output


def test_readable_table_with_mapping(tmp_path):
    runner.invoke(app, ["demo-data", "--customers", "200", "--days", "400", "-o", str(tmp_path)])
    import pandas as pd

    events = pd.read_parquet(tmp_path / "events.parquet").rename(
        columns={"customer_id": "Client", "ts": "When"})
    events.to_csv(tmp_path / "export.csv", index=False)
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "export.csv"), "--horizon",
                              "60", "--models", "recency", "--map", "customer_id=Client",
                              "--map", "ts=When"])
    assert res.exit_code == 0, res.output
    assert "recency" in res.stdout and "auc" in res.stdout and "test cutoff" in res.stdout
