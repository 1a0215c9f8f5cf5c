"""train -> versions -> evaluate --model -> rollback, through the CLI, on a tiny budget."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from finetune.churn_models import MIN_HELD_OUT
from service.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
TINY = ["--horizon", "60", "--max-tokens", "48", "--max-steps", "8", "--batch-size", "8",
        "--encoder-max-examples", "160", "--max-train-cutoffs", "3"]


def test_train_publish_evaluate_and_roll_back(tmp_path):
    data, root = tmp_path / "data", tmp_path / "models"
    res = runner.invoke(app, ["demo-data", "--customers", "150", "--days", "420", "-o", str(data)])
    assert res.exit_code == 0, res.output
    events = str(data / "events.parquet")
    for seed in ("0", "1"):
        res = runner.invoke(app, ["train", "--events", events, "--out", str(root), "--seed", seed,
                                  *TINY])
        assert res.exit_code == 0, res.output
    assert (root / "CURRENT").read_text().strip() == "v0002"
    version = root / "versions" / "v0002"
    for name in ("adapter/adapter_config.json", "head.safetensors", "calibration.json",
                 "lightgbm.txt", "stacker.json", "config.json", "metrics.json", "MODEL_CARD.md"):
        assert (version / name).exists(), name
    card = (version / "MODEL_CARD.md").read_text()
    assert "| lightgbm |" in card and "| hybrid |" in card and "Test cutoff" in card
    assert "ROC-AUC (95% CI)" in card and "Hybrid minus LightGBM ROC-AUC" in card
    metrics = json.loads((version / "metrics.json").read_text())
    assert set(metrics["models"]) == {"lightgbm", "logreg", "recency", "encoder", "hybrid"}
    # The encoder trained on a sample from some customers: every snapshot of the other
    # customers joins validation for the calibration and the stack (out-of-sample rows only,
    # from several cutoffs).
    stack_rows = metrics["models"]["hybrid"]["params"]["stack_rows"]
    assert metrics["models"]["encoder"]["params"]["encoder_rows"] == 160
    assert 0 < stack_rows["held_out_fit"] <= metrics["n_fit"] - 160
    pooled = stack_rows["held_out_fit"] < MIN_HELD_OUT  # tiny data: held-out rows + validation
    assert stack_rows["validation"] == (metrics["n_val"] if pooled else 0)
    assert metrics["models"]["encoder"]["params"]["calibration_rows"] == (
        stack_rows["held_out_fit"] + stack_rows["validation"])
    enc = metrics["models"]["encoder"]["params"]  # stopped on unseen customers when enough
    assert 0 < enc["early_stopping_rows"] <= metrics["n_val"]
    if not enc["early_stopping_unseen_only"]:  # too few unseen customers: all of validation
        assert enc["early_stopping_rows"] == metrics["n_val"]
    assert not (root / ".work").exists() or not any((root / ".work").iterdir())

    res = runner.invoke(app, ["evaluate", "--events", events, "--model", str(root), "--json"])
    assert res.exit_code == 0, res.output
    scored = json.loads(res.stdout.strip().splitlines()[-1])
    # Same data, same test cutoff: the saved model reproduces its own test metrics.
    for kind in ("encoder", "hybrid"):
        assert scored["models"][kind]["auc"] == pytest.approx(metrics["models"][kind]["auc"],
                                                              abs=1e-6)

    res = runner.invoke(app, ["models", "rollback", str(root)])
    assert res.exit_code == 0 and (root / "CURRENT").read_text().strip() == "v0001"
    res = runner.invoke(app, ["models", "list", str(root)])
    assert "v0001" in res.stdout and "v0002" in res.stdout
    res = runner.invoke(app, ["models", "rollback", str(root)])
    assert res.exit_code == 2 and "oldest" in res.output


def test_missing_model_and_unknown_encoder_are_clear(tmp_path):
    res = runner.invoke(app, ["models", "list", str(tmp_path)])
    assert res.exit_code == 2 and "no model versions" in res.output
    data = tmp_path / "d"
    runner.invoke(app, ["demo-data", "--customers", "60", "--days", "300", "-o", str(data)])
    res = runner.invoke(app, ["evaluate", "--events", str(data / "events.parquet"), "--horizon",
                              "60", "--models", "encoder", "--encoder", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "never downloaded" in res.output
