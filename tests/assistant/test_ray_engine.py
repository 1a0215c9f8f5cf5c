"""The Ray engine on a local Ray instance gives the local engine's probabilities (1e-6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assistant.stream import StreamConfig, score_file

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_ray_scores_equal_local_scores(local_ray, trained_model, synthetic, tmp_path, precision):
    from assistant.ray_engine import score_file_ray

    events, _ = synthetic
    path = tmp_path / "events.parquet"
    events.to_parquet(path, index=False)
    config = StreamConfig(chunk_customers=200, precision=precision)
    local = score_file(trained_model, path, tmp_path / "local.parquet", config=config)
    out = tmp_path / "ray_out"
    out.mkdir()
    (out / "stale.txt").write_text("yesterday's output, replaced only when the new one is whole")
    summary = score_file_ray(trained_model, path, out, config=config, workers=2)
    assert summary.engine == "ray" and summary.partitions == local.partitions == 3
    assert not (out / "stale.txt").exists()
    a = pd.read_parquet(tmp_path / "local.parquet").set_index("customer_id").sort_index()
    b = pd.read_parquet(out).set_index("customer_id").sort_index()
    assert list(a.index) == list(b.index) and summary.customers == len(a)
    assert np.abs(a["probability"].to_numpy() - b["probability"].to_numpy()).max() <= 1e-6
    assert (a["band"] == b["band"]).all() and (a["fingerprint"] == b["fingerprint"]).all()
