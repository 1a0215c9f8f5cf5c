"""Batch reports: CRM files and a self-contained HTML report; an interrupted job resumes without
redoing finished customers and ends with the same files as an uninterrupted run."""

from __future__ import annotations

import pandas as pd
import pytest

from assistant.explain import Assistant
from assistant.playbook import Playbook
from assistant.scoring import Scorer
from finetune.artifacts import TrainedModel
from service import reports
from service.reports import ReportConfig, run_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(trained_model, synthetic):
    events = synthetic[0]
    events = events[events["customer_id"] < "C00045"].reset_index(drop=True)
    helper = Assistant(Scorer(TrainedModel.load(trained_model)), Playbook.load())
    return helper, events


def test_report_files_and_resume_after_a_crash(tmp_path, setup, monkeypatch):
    helper, events = setup
    config = ReportConfig(top_n=3, chunk=4, cutoff="2024-05-01")
    straight = run_report(helper, events, tmp_path / "a", config)
    frame = pd.read_parquet(straight["parquet"])
    assert list(frame.columns) == ["customer_id", "probability", "band", "top_reasons",
                                   "action_ids"]
    assert frame["probability"].is_monotonic_decreasing and len(frame) > 12
    html = straight["html"].read_text()
    assert "Customers most at risk" in html and "cumulative lift" in html  # outcomes known
    assert "<script" not in html  # self-contained, no scripts

    calls = {"n": 0}
    real = reports.score_chunk

    def crash_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "score_chunk", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_report(helper, events, tmp_path / "b", config)
    assert not (tmp_path / "b" / "risk_report.csv").exists()  # nothing half-written
    done = list((tmp_path / "b" / ".work").rglob("chunk_*.parquet"))
    assert len(done) == 2

    counted = {"n": 0}

    def counting(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "score_chunk", counting)
    resumed = run_report(helper, events, tmp_path / "b", config)
    n_chunks = -(-len(frame) // config.chunk)
    assert counted["n"] == n_chunks - 2  # finished chunks were not redone
    for kind in ("csv", "parquet"):
        assert resumed[kind].read_bytes() == straight[kind].read_bytes()
    assert resumed["html"].read_text() == html
    assert not (tmp_path / "b" / ".work").exists() or not any(
        (tmp_path / "b" / ".work").iterdir())
