"""Bulk scoring: streaming partitions give the in-memory scores, reuse unchanged customers, never
leave half a file, and name the bad row of a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from assistant.scoring import Scorer
from assistant.stream import StreamConfig, partition_of, score_file
from finetune.artifacts import TrainedModel
from finetune.contract import DataError
from finetune.labels import churn_labels


@pytest.fixture(scope="module")
def events_file(tmp_path_factory, synthetic) -> Path:
    events, _ = synthetic
    path = tmp_path_factory.mktemp("stream") / "events.parquet"
    events.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def in_memory(trained_model, synthetic) -> pd.DataFrame:
    events, _ = synthetic
    return Scorer(TrainedModel.load(trained_model)).score(events).set_index("customer_id")


def test_partition_is_stable_and_keeps_a_customer_together():
    ids = pd.Series(["C1", "C2", "C3", "C1"] * 50)
    first = partition_of(ids, 7)
    assert (first == partition_of(ids.copy(), 7)).all()
    assert len(set(first[ids == "C1"])) == 1
    assert set(first) <= set(range(7))


def test_partitions_hold_whole_histories_even_in_several_passes(events_file, synthetic,
                                                                tmp_path, monkeypatch):
    from assistant import stream

    events, _ = synthetic
    monkeypatch.setattr(stream, "MAX_OPEN", 2)  # 6 partitions: the input is read 3 times
    parted = stream.partition_events(events_file, tmp_path / "parts",
                                     StreamConfig(chunk_customers=100, read_rows=7000))
    assert len(parted.parts) == 6 and parted.n_customers == events["customer_id"].nunique()
    frames = [pd.read_parquet(p) for p in parted.parts]
    assert sum(len(f) for f in frames) == parted.n_rows == len(events)
    owners = pd.concat([f[["customer_id"]].drop_duplicates().assign(part=i)
                        for i, f in enumerate(frames)])
    assert not owners["customer_id"].duplicated().any()  # each customer in one partition only
    assert parted.cutoff == events["ts"].max().normalize() + pd.Timedelta(days=1)


@pytest.mark.slow
def test_streamed_fp32_scores_equal_in_memory_scores(trained_model, events_file, in_memory,
                                                      tmp_path):
    out = tmp_path / "scores.parquet"
    summary = score_file(trained_model, events_file, out,
                         config=StreamConfig(chunk_customers=150, read_rows=5000,
                                             precision="fp32"))
    got = pd.read_parquet(out).set_index("customer_id")
    assert summary.partitions == 4 and summary.customers == len(in_memory) == len(got)
    assert not (tmp_path / "scores.parquet.tmp").exists()
    assert not (tmp_path / "scores.parquet.work").exists()
    joined = in_memory.merge(got, left_index=True, right_index=True, suffixes=("", "_s"))
    assert len(joined) == len(in_memory)
    assert np.abs(joined["probability"] - joined["probability_s"]).max() < 1e-5
    assert (joined["band"] == joined["band_s"]).all()


@pytest.mark.slow
def test_int8_keeps_the_ranking(trained_model, synthetic, events_file, in_memory, tmp_path):
    events, _ = synthetic
    out = tmp_path / "int8.parquet"
    score_file(trained_model, events_file, out, config=StreamConfig(precision="int8"))
    got = pd.read_parquet(out).set_index("customer_id").reindex(in_memory.index)
    assert np.abs(got["probability"] - in_memory["probability"]).max() < 0.03
    cutoff = in_memory["cutoff"].iloc[0] - pd.Timedelta(days=120)
    scored = Scorer(TrainedModel.load(trained_model)).score(events, cutoff)
    streamed = score_file(trained_model, events_file, tmp_path / "past.parquet", cutoff=cutoff,
                          config=StreamConfig(precision="int8"))
    assert streamed.customers == len(scored)
    past = pd.read_parquet(tmp_path / "past.parquet").set_index("customer_id").reindex(
        scored["customer_id"])
    y = churn_labels(events, cutoff, pd.Index(scored["customer_id"]),
                     TrainedModel.load(trained_model).definition).to_numpy()
    auc_fp32 = roc_auc_score(y, scored["probability"])
    auc_int8 = roc_auc_score(y, past["probability"])
    assert abs(auc_fp32 - auc_int8) < 0.01


@pytest.mark.slow
def test_rescoring_reuses_unchanged_customers(trained_model, synthetic, tmp_path, events_file):
    events, _ = synthetic
    first = tmp_path / "first.parquet"
    s1 = score_file(trained_model, events_file, first, config=StreamConfig(precision="fp32"))
    who = pd.read_parquet(first)["customer_id"].iloc[0]
    last = events["ts"].max()
    extra = pd.DataFrame([{"customer_id": who, "ts": last - pd.Timedelta(hours=1),
                           "event": "ticket", "text": "My parcel never arrived, I want a refund"}])
    changed = tmp_path / "changed.parquet"
    pd.concat([events, extra], ignore_index=True).assign(
        event=lambda f: f["event"].astype(str)).to_parquet(changed, index=False)
    second = tmp_path / "second.parquet"
    s2 = score_file(trained_model, changed, second, previous=first,
                    config=StreamConfig(precision="fp32"))
    assert s2.customers == s1.customers and s2.reused == s1.customers - 1
    fresh = tmp_path / "fresh.parquet"
    score_file(trained_model, changed, fresh, config=StreamConfig(precision="fp32"))
    a = pd.read_parquet(second).set_index("customer_id")["probability"]
    b = pd.read_parquet(fresh).set_index("customer_id").reindex(a.index)["probability"]
    assert np.abs(a - b).max() < 1e-5
    assert a[who] != pd.read_parquet(first).set_index("customer_id")["probability"][who]


def test_bad_row_is_named_and_good_output_is_kept(trained_model, synthetic, tmp_path):
    events, _ = synthetic
    raw = events.head(40).assign(event=lambda f: f["event"].astype(str))
    raw.loc[32, "event"] = "teleport"
    bad = tmp_path / "bad.parquet"
    raw.to_parquet(bad, index=False)
    out = tmp_path / "scores.parquet"
    out.write_text("the good output of yesterday")
    with pytest.raises(DataError) as info:
        score_file(trained_model, bad, out, config=StreamConfig(read_rows=10))
    assert "row(s): 33" in str(info.value) and "'event'" in str(info.value)
    assert out.read_text() == "the good output of yesterday"
    assert not (tmp_path / "scores.parquet.work").exists()


def test_csv_is_refused_with_a_hint(trained_model, tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text("customer_id,ts,event\nC1,2024-01-01,order\n")
    with pytest.raises(DataError, match="Parquet"):
        score_file(trained_model, csv, tmp_path / "o.parquet")


@pytest.mark.slow
def test_cli_score_json(trained_model, events_file, tmp_path):
    from typer.testing import CliRunner

    from service.cli import app

    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["score", "--events", str(events_file), "--out", str(out),
                                      "--model", str(trained_model), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["engine"] == "local" and summary["customers"] == len(pd.read_parquet(out))
    bad = CliRunner().invoke(app, ["score", "--events", str(events_file), "--out", str(out),
                                   "--model", str(trained_model), "--engine", "spark"])
    assert bad.exit_code == 2 and "engine must be local or ray" in bad.output
