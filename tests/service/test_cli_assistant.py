"""retention index / explain through the CLI: JSON out, clear errors for bad requests."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from finetune.loaders import write_events
from service.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def events_file(tmp_path_factory, synthetic):
    # A few customers: `retention index` embeds every document, which is the slow part.
    path = tmp_path_factory.mktemp("ev") / "events.parquet"
    write_events(synthetic[0][synthetic[0]["customer_id"] < "C00012"], path)
    return path


def test_explain_json_and_index(tmp_path, events_file, trained_model, synthetic):
    cid = str(synthetic[0]["customer_id"].iloc[0])
    store = str(tmp_path / "chroma")
    res = runner.invoke(app, ["explain", "--events", str(events_file), "--customer", cid,
                              "--model", str(trained_model), "--backend", "none", "--store",
                              store, "--json", "--lang", "zh"])
    assert res.exit_code == 0, res.output
    x = json.loads(res.stdout[res.stdout.index("{"):])
    assert x["customer_id"] == cid and x["language"] == "zh" and x["reasons"] and x["actions"]
    assert {e["customer_id"] for e in x["evidence"]} == {cid}
    # The explained customer's documents went into the store on the way.
    res = runner.invoke(app, ["index", "--events", str(events_file), "--store", store])
    assert res.exit_code == 0, res.output
    assert "unchanged" in res.output and "playbook entries" in res.output


@pytest.mark.parametrize("extra, message", [
    (["--customer", "NOBODY"], "has no events before"),
    (["--customer", "C00001", "--lang", "fr"], "language 'fr' is not supported"),
    (["--customer", "C00001", "--backend", "gpt5"], "unknown LLM backend 'gpt5'"),
])
def test_bad_requests_are_clear(tmp_path, events_file, trained_model, extra, message):
    # A repeated option takes its last value, so extra's --backend overrides the default one.
    res = runner.invoke(app, ["explain", "--events", str(events_file), "--model",
                              str(trained_model), "--backend", "none", "--store",
                              str(tmp_path / "c"), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_missing_or_broken_llm_is_a_clear_message(tmp_path, events_file, trained_model,
                                                  monkeypatch):
    monkeypatch.setenv("RETENTION_LLM_MODEL_PATH", str(tmp_path / "missing.gguf"))
    args = ["explain", "--events", str(events_file), "--model", str(trained_model),
            "--customer", "C00001", "--backend", "local", "--store", str(tmp_path / "c")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "does not exist" in res.output, res.output
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 1000)
    monkeypatch.setenv("RETENTION_LLM_MODEL_PATH", str(broken))
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert ("cannot load" in res.output or "llama-cpp-python is not installed" in res.output)
    assert "Traceback" not in res.output
