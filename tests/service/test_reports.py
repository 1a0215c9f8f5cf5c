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
                                   "action_ids", "action_evidence", "experiment_arm"]
    assert frame["probability"].is_monotonic_decreasing and len(frame) > 12
    html = straight["html"].read_text()
    assert "Customers most at risk" in html and "cumulative lift" in html  # outcomes known
    assert "<script" not in html  # self-contained, no scripts
    assert "Worded from the customer&#39;s records (no LLM)" in html or \
        "Worded from the customer's records (no LLM)" in html  # who wrote it, in plain words

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


def test_report_shows_what_worked_and_the_experiment(tmp_path, setup):
    """Measured effects rank the CSV's actions and fill the "what worked" section; holdout
    customers get no action in the CSV and say so."""
    import dataclasses

    from assistant.experiment import ExperimentConfig
    from finetune.uplift import ActionEffect

    helper, events = setup
    effect = ActionEffect(action_id="feedback_survey", source="randomised", causal=True, n=1240,
                          n_holdout=900, retained=0.6, holdout_retained=0.559, uplift=0.041,
                          ci_low=0.012, ci_high=0.07, cost_per_customer=0.2,
                          cost_per_kept=4.9, measured=True, method="randomised")
    measured = dataclasses.replace(helper, effects={"feedback_survey": effect},
                                   experiment=ExperimentConfig(holdout=0.3))
    paths = run_report(measured, events, tmp_path / "m", ReportConfig(top_n=2, chunk=8,
                                                                       cutoff="2024-05-01"))
    frame = pd.read_csv(paths["csv"])
    assert {"action_evidence", "experiment_arm"} <= set(frame.columns)
    held = frame[frame["experiment_arm"] == "holdout"]
    assert len(held) and held["action_ids"].isna().all()
    acting = frame[frame["action_ids"].fillna("").str.startswith("feedback_survey")]
    assert len(acting) and acting["action_evidence"].str.startswith(
        "measured: +4.1 points retained").all()
    html = paths["html"].read_text()
    assert "What worked" in html and "feedback_survey (n=1240)" in html and "+4.1" in html


def test_a_chinese_report_has_chinese_labels_and_reasons(tmp_path, setup):
    import re

    helper, events = setup
    paths = run_report(helper, events, tmp_path / "zh", ReportConfig(top_n=2, chunk=16,
                                                                     cutoff="2024-05-01",
                                                                     lang="zh"))
    html = paths["html"].read_text()
    for label in ("客户流失风险报告", "风险分布", "最常见的原因", "客户分群", "风险最高的客户",
                  "哪些措施有效", "根据客户记录撰写（未使用 LLM）"):
        assert label in html, label
    headings = re.findall(r"<h[12]>(.*?)</h[12]>", html)
    assert headings and all(re.search(r"[\u4e00-\u9fff]", h) for h in headings), headings
    frame = pd.read_csv(paths["csv"])
    reasons = frame["top_reasons"].dropna()
    assert len(reasons) and reasons.str.contains(r"[\u4e00-\u9fff]").all()
