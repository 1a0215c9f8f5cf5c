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
                         check=False, capture_output=True, text=True, timeout=900, cwd=ROOT)
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


def test_warning_outcomes_use_the_churn_definition():
    """A warned customer who orders again within H did not churn; one who never orders again
    did; recall counts churners warned between their last order and H days later."""
    import pandas as pd

    from finetune.labels import ChurnDefinition
    from tests.conftest import make_events

    sys.path.insert(0, str(ROOT / "bench"))
    from replay import warning_outcomes

    events = make_events([("a", "2025-01-01", "order"), ("a", "2025-02-15", "order"),
                          ("b", "2025-01-01", "order"), ("b", "2025-01-20", "order"),
                          ("c", "2025-01-05", "order"), ("c", "2025-06-01", "order"),
                          ("c", "2025-08-01", "visit")])
    warnings = pd.DataFrame({"customer_id": ["a", "b", "c"],
                             "as_of": ["2025-02-01", "2025-02-01", "2025-05-20"]})
    out = warning_outcomes(events, warnings, [pd.Timestamp("2025-02-01", tz="UTC")],
                           ChurnDefinition(horizon=30), pd.Timestamp("2025-01-10", tz="UTC"),
                           pd.Timestamp("2025-04-01", tz="UTC"))
    assert out["precision"] == pytest.approx(1 / 3)  # a ordered on 02-15, c ordered in June
    assert out["base_rate"] == pytest.approx(2 / 3)  # on 02-01 all three are eligible: b, c churn
    assert out["churners"] == 2 and out["warned_churners"] == 1  # a (gone 03-17), b (02-20)
    assert out["median_lead_days"] == 19  # b warned 02-01, gone 02-20
