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
                            encoder_max_examples=384,
                            # fewer than validation's rows: the text models read a sample of it
                            encoder_val_max_rows=150,
                            # every input, so the shared model exercises every attribution path
                            served_inputs=("encoder", "lightgbm", "logreg"))
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


def _postgres_bin() -> Path | None:
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def local_postgres():
    """A throwaway PostgreSQL server from Debian's package (``postgresql``), on a Unix socket
    in a temporary folder: (SQLAlchemy URL, data directory). Skips when the server binaries
    or psycopg are absent. As root the server runs as the ``postgres`` user, as it must."""
    import getpass
    import subprocess

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e .[dev])")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries absent (apt-get install postgresql)")
    import shutil
    import tempfile

    # Not under pytest's temporary folder: it is private to root, and the server's user
    # must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="retention-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    user = getpass.getuser()
    if os.geteuid() == 0:
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
        subprocess.run(["chown", "-R", "postgres", str(root)], check=True)
        root.chmod(0o755)
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                             "--no-sync"], check=True, capture_output=True)
    port = "55439"
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                             str(root / "log"), "-o", f"-k {sock} -p {port} -h ''", "start"],
                   check=True, capture_output=True)
    try:
        yield (f"postgresql+psycopg://{user}@/postgres?host={sock}&port={port}", data)
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
