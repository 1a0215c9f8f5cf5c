"""train -> versions -> evaluate --model -> rollback, through the CLI, on a tiny budget."""

from __future__ import annotations

import json

import pandas as pd
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
    res = runner.invoke(app, ["train", "--events", events, "--out", str(root), "--no-refit",
                              *TINY])
    assert res.exit_code == 0, res.output
    assert "the first version" in res.output
    res = runner.invoke(app, ["train", "--events", events, "--out", str(root), "--seed", "1",
                              "--tolerance", "1", *TINY])
    assert res.exit_code == 0, res.output
    assert (root / "CURRENT").read_text().strip() == "v0002"
    assert "same data and protocol" in res.output and "refitted on cutoffs" in res.output
    version = root / "versions" / "v0002"
    for name in ("adapter/adapter_config.json", "head.safetensors", "calibration.json",
                 "stacker.json", "config.json", "metrics.json", "MODEL_CARD.md"):
        assert (version / name).exists(), name
    card = (version / "MODEL_CARD.md").read_text()
    assert "| lightgbm |" in card and "| hybrid |" in card and "| served |" in card
    assert "Test cutoff" in card
    assert "ROC-AUC (95% CI)" in card and "Served minus LightGBM ROC-AUC" in card
    assert "Training window: " in card and "LightGBM: " in card and "n_estimators=" in card
    metrics = json.loads((version / "metrics.json").read_text())
    assert set(metrics["models"]) == {"lightgbm", "lightgbm_plain", "logreg", "recency", "bgnbd",
                                      "encoder", "hybrid", "stack", "served"}
    # The served model was chosen on validation among every stack of the bases, and the card
    # says which won and by how much; what it reads was saved beside it.
    served = metrics["models"]["served"]["params"]
    choice = served["choice"]
    assert len(choice["val_auc"]) == 15 and choice["chosen"] == "+".join(served["inputs"])
    assert choice["val_auc"][choice["chosen"]] >= max(choice["val_auc"].values()) - 0.001
    assert f"Served: **{choice['chosen']}**" in card and "Validation ROC-AUC by candidate" in card
    files = {"lightgbm": "lightgbm.txt", "logreg": "logreg.json", "bgnbd": "bgnbd.json"}
    for base, name in files.items():
        assert (version / name).exists() == (base in served["inputs"]), name
    # The training window was chosen on validation and recorded with its evidence.
    assert metrics["backtest"]["window"]["reason"]
    # The encoder trained on a sample from some customers: every snapshot of the other
    # customers joins validation for the calibration and the stack (out-of-sample rows only,
    # from several cutoffs).
    stack_rows = metrics["models"]["served"]["params"]["stack_rows"]
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

    # The published model learnt from the newest labelled cutoff (data end - H), one horizon
    # after the backtest fit whose figures the card shows.
    config = json.loads((version / "config.json").read_text())
    frame = pd.read_parquet(events)
    end = frame["ts"].max().normalize() + pd.Timedelta(days=1)
    published = metrics["published"]
    assert config["refit"] and published["refit"]
    assert published["val_cutoffs"] == [str((end - pd.Timedelta(days=60)).date())]
    assert published["val_cutoffs"][-1] > metrics["backtest"]["val_cutoffs"][-1]
    assert config["trained_through"] == str(end.date())
    assert "refitted with the same hyper-parameters" in card and "## Promotion" in card

    # The backtest fit (no refit, v0001) reproduces its own test metrics on the same data.
    first = json.loads((root / "versions" / "v0001" / "metrics.json").read_text())
    res = runner.invoke(app, ["evaluate", "--events", events, "--model",
                              str(root / "versions" / "v0001"), "--json"])
    assert res.exit_code == 0, res.output
    scored = json.loads(res.stdout.strip().splitlines()[-1])
    for kind in ("encoder", "served"):
        assert scored["models"][kind]["auc"] == pytest.approx(first["models"][kind]["auc"],
                                                              abs=1e-6)

    # The gate: a current version that did much better on the same data and protocol stays
    # current; --force overrides it.
    metrics["models"]["served"]["auc"] = 0.999
    (version / "metrics.json").write_text(json.dumps(metrics))
    res = runner.invoke(app, ["train", "--events", events, "--out", str(root), *TINY])
    assert res.exit_code == 0, res.output
    assert "kept v0002" in res.output and "0.9990" in res.output
    assert (root / "CURRENT").read_text().strip() == "v0002"
    assert json.loads((root / "versions" / "v0003" / "metrics.json").read_text())[
        "promotion"]["decision"] == "kept v0002"
    res = runner.invoke(app, ["train", "--events", events, "--out", str(root), "--force",
                              "--seed", "2", *TINY])
    assert res.exit_code == 0 and (root / "CURRENT").read_text().strip() == "v0004"
    assert "forced" in res.output
    (root / "CURRENT").write_text("v0002\n")

    res = runner.invoke(app, ["models", "rollback", str(root)])
    assert res.exit_code == 0 and (root / "CURRENT").read_text().strip() == "v0001"
    res = runner.invoke(app, ["models", "list", str(root)])
    assert "v0001" in res.stdout and "v0004" in res.stdout
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
    res = runner.invoke(app, ["train", "--events", str(data / "events.parquet"), "--out",
                              str(tmp_path / "m"), "--served", "lightgbm,xgboost"])
    assert res.exit_code == 2 and "--served must be auto or" in res.output
