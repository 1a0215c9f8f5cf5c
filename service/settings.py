"""Settings from the environment or ``.env`` (prefix ``RETENTION_``), one object, no globals."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETENTION_", env_file=".env", extra="ignore")

    home: Path = Path(".retention")
    """Where the demo data, models and reports go by default."""

    shared_data: Path = Path("../shared/data")
    """The real public datasets (Online Retail, Amazon reviews, Chinese reviews)."""

    seed: int = 0
    demo_customers: int = 2000
