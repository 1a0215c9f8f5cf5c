"""Shared fixtures: small handmade events, seeded synthetic data, and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from finetune.contract import validate_events
from finetune.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RETENTION_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a real dataset, or skip the test saying where it was looked for."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real data absent: {path} (set RETENTION_SHARED_DATA or clone beside shared/)")
    return path


def make_events(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (customer_id, ts, event[, amount]) -> canonical events."""
    frame = pd.DataFrame([{"customer_id": r[0], "ts": r[1], "event": r[2],
                           "amount": r[3] if len(r) > 3 else None} for r in rows])
    events, _ = validate_events(frame, "test")
    return events


@pytest.fixture(scope="session")
def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    events, customers = generate(SyntheticConfig(customers=600, seed=7, days=540))
    events, _ = validate_events(events, "synthetic")
    return events, customers


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, synthetic) -> Path:
    """A small published model (LightGBM + a briefly trained LoRA encoder, stacked) for the
    assistant and service tests: weak, but real weights, real training, real artifacts."""
    from finetune.evaluate import EvaluateConfig
    from finetune.labels import ChurnDefinition
    from finetune.lora import LoraConfig
    from finetune.train import train

    events, _ = synthetic
    root = tmp_path_factory.mktemp("models")
    config = EvaluateConfig(definition=ChurnDefinition(horizon=60), max_train_cutoffs=3,
                            lora=LoraConfig(max_tokens=64, max_steps=24, batch_size=16,
                                            eval_every=24, eval_examples=128),
                            encoder_max_examples=384)
    # The backtest fit is published (no refit: it would double this fixture's time);
    # tests/service/test_cli_train.py covers the refit.
    train(events, config, root, dataset="synthetic-test", refit_published=False)
    return root


def service_database_url() -> str | None:
    """A fresh PostgreSQL database when RETENTION_TEST_POSTGRES_URL names a server (e.g.
    postgresql+psycopg://postgres@/postgres?host=/tmp&port=55432); None means SQLite."""
    import uuid

    admin_url = os.environ.get("RETENTION_TEST_POSTGRES_URL")
    if not admin_url:
        return None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"rt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)
