"""The CLI end to end on small synthetic data: JSON contract, readable table, clean errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from finetune.evaluate import compare_runs
from service.cli import app

runner = CliRunner()


def test_demo_data_then_evaluate_json(tmp_path):
    res = runner.invoke(app, ["demo-data", "--customers", "300", "--seed", "3", "--days", "500",
                              "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "events.parquet").exists() and (tmp_path / "customers.parquet").exists()
    preds = tmp_path / "preds.parquet"
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--horizon", "60", "--models", "lightgbm,recency", "--json",
                              "--predictions", str(preds)])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("dataset", "horizon", "test_cutoff", "n_train", "n_test", "test_churn_rate"):
        assert key in result
    assert result["horizon"] == 60 and set(result["models"]) == {"lightgbm", "recency"}
    for metrics in result["models"].values():
        assert set(metrics) >= {"auc", "pr_auc", "brier", "ece", "lift10", "recall10", "f1",
                                "auc_ci", "ece_ci"}
        assert metrics["auc_ci"][0] <= metrics["auc"] <= metrics["auc_ci"][1]
    gap = result["models"]["recency"]
    assert gap["reference"] == "lightgbm" and gap["auc_diff"] == pytest.approx(
        gap["auc"] - result["models"]["lightgbm"]["auc"])
    # The test predictions reproduce the reported metrics and compare with themselves as equal.
    frame = pd.read_parquet(preds)
    assert len(frame) == result["n_test"]
    assert roc_auc_score(frame["label"], frame["lightgbm"]) == pytest.approx(
        result["models"]["lightgbm"]["auc"])
    same = compare_runs(frame, frame, "lightgbm", n_boot=50)
    assert same["auc_a_minus_b"] == 0 and same["ci95"] == [0, 0]
    vs = compare_runs(frame, frame, "lightgbm", "recency", n_boot=50)
    assert vs["auc_a_minus_b"] == pytest.approx(gap["auc"] * -1 + result["models"]["lightgbm"]["auc"])
    with pytest.raises(ValueError, match="different customers"):
        compare_runs(frame, frame.iloc[1:], "lightgbm")
    # Not a terminal (cron, CI): progress comes as timestamped lines on stderr, never silence.
    assert "evaluating: started" in res.stderr and "evaluating: fitting lightgbm" in res.stderr
    assert "training window:" in res.stderr


def test_evaluate_rolling_origins_table(tmp_path):
    runner.invoke(app, ["demo-data", "--customers", "300", "--seed", "3", "--days", "500",
                        "-o", str(tmp_path)])
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--horizon", "60", "--models", "logreg,bgnbd", "--origins", "2",
                              "--train-window", "all"])
    assert res.exit_code == 0, res.output
    assert "2 origins" in res.stdout and "winner by origin" in res.stdout
    assert "bgnbd" in res.stdout
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--train-window", "some"])
    assert res.exit_code == 2 and "--train-window" in res.output
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--horizon", "60", "--models", "logreg", "--train-window", "all",
                              "--btyd-features", "off", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["models"]["logreg"]["params"].get("btyd_features") is None
    res = runner.invoke(app, ["evaluate", "--events", str(tmp_path / "events.parquet"),
                              "--btyd-features", "maybe"])
    assert res.exit_code == 2 and "--btyd-features must be auto, on or off" in res.output


def test_bad_predictions_path_fails_before_training(tmp_path):
    res = runner.invoke(app, ["evaluate", "--events", "x.csv", "--predictions",
                              str(tmp_path / "p.xlsx")])
    assert res.exit_code == 2 and "p.xlsx" in res.output and ".parquet or .csv" in res.output


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
    assert "recency: auc 95% CI" in res.stdout


@pytest.mark.parametrize("command", ["evaluate_cmd", "train_cmd"])
def test_cli_defaults_are_the_api_defaults(command):
    """A Python user and a CLI user get the same model from the same data: every option that
    names a config field defaults to that field's value (the API once trained the encoder on
    every fit row for two epochs, the CLI on 3,000 rows for one)."""
    import dataclasses
    import inspect

    from finetune.evaluate import EvaluateConfig
    from finetune.labels import ChurnDefinition
    from finetune.lora import LoraConfig
    from service import cli_model

    config = EvaluateConfig()
    api = {**dataclasses.asdict(LoraConfig()), **dataclasses.asdict(ChurnDefinition()),
           **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in ("lora", "definition")}}
    listed = {"models", "target_modules"}  # comma-separated on the command line
    checked = []
    for name, param in inspect.signature(getattr(cli_model, command)).parameters.items():
        if name not in api:
            continue
        default = param.default
        if name in listed:
            default = tuple(default.split(","))
        assert default == api[name], f"--{name.replace('_', '-')}: CLI {default!r}, API {api[name]!r}"
        checked.append(name)
    assert {"encoder_max_examples", "epochs", "max_tokens", "horizon"} <= set(checked)
