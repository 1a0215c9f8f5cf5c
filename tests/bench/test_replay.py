"""bench/replay.py --quick: the real service on loopback, replayed day by day on a sample, with
a receiver that refuses first attempts: no warning lost or duplicated, and the stored scores
equal offline fp32 bulk scoring at the checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.loaders import write_events

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_quick_replay(tmp_path, synthetic, trained_model):
    events = tmp_path / "events.parquet"
    write_events(synthetic[0], events)
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "replay.py"), "--events",
                          str(events), "--model", str(trained_model), "--quick", "90",
                          "--weeks", "4", "--rescore-every", "7", "--threshold", "0.6",
                          "--workdir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    warnings = out["warnings"]
    assert out["customers"] == 90 and out["days"] == 28 and out["rescorings"] >= 4
    assert out["events_posted"] > 0
    assert warnings["raised"] > 0 and warnings["lost"] == 0 and warnings["duplicates"] == 0
    assert warnings["delivered"] == warnings["raised"] and warnings["bad_signatures"] == 0
    assert warnings["refused_first_attempts"] > 0  # retries were exercised
    assert len(out["consistency"]) == 3 and out["max_abs_diff"] <= 1e-6
    for check in out["consistency"]:
        assert check["common"] == check["offline_customers"] == check["service_customers"]
    assert 0 <= out["precision"] <= 1 and 0 <= out["base_rate"] <= 1
