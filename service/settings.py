"""Settings from the environment or ``.env`` (prefix ``RETENTION_``), one object, no globals."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETENTION_", env_file=".env", extra="ignore")

    home: Path = Path(".retention")
    """Where the demo data, models, reports and the Chroma store go by default."""

    shared_data: Path = Path("../shared/data")
    """The real public datasets (Online Retail, Amazon reviews, Chinese reviews)."""

    seed: int = 0
    demo_customers: int = 2000

    chroma_path: Path | None = None
    """The Chroma store (default: HOME/chroma)."""

    playbook: Path | None = None
    """Your retention playbook YAML (default: the one that ships with the package)."""

    band_medium: float = Field(0.3, gt=0, lt=1)
    band_high: float = Field(0.6, gt=0, lt=1)

    llm_backend: str = "local"
    """local (Qwen2.5-Coder-1.5B GGUF), small (SmolLM2-135M), openai, or none."""
    llm_model_path: Path | None = None
    """A GGUF file to use instead of the packaged one (local/small backends)."""
    llm_threads: int | None = None
    llm_max_tokens: int = 384
    llm_batch: int = Field(512, ge=8)
    """Prompt tokens llama.cpp evaluates per step (local and small backends)."""
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_api_key: str | None = None

    database_url: str | None = None
    """SQLAlchemy URL of the service's database (default: SQLite at HOME/retention.db)."""
    model_dir: Path | None = None
    """The model the service scores with (default: HOME/models, its CURRENT version)."""
    as_of: str = "today"
    """The one as-of date of every score: ``today`` (UTC), ``data`` (the day after the newest
    stored event; demos and replays) or a date YYYY-MM-DD."""
    clock_control: bool = False
    """Let an admin key move the as-of date (``PUT /v1/clock``): replays and backfills only."""
    rescore_at: str = "02:00"
    """UTC time of the daily rescoring of every customer (HH:MM); empty: off (use cron and
    ``retention rescore`` instead)."""

    webhook_url: str | None = None
    """Where risk warnings are POSTed when a customer crosses ``risk_threshold``."""
    webhook_secret: str | None = None
    """HMAC-SHA256 key of the X-Retention-Signature header; required with a webhook URL."""
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = Field(12, ge=1)
    webhook_backoff_s: float = Field(2.0, gt=0)
    """First retry after this many seconds, doubling each time up to ``webhook_backoff_max_s``."""
    webhook_backoff_max_s: float = Field(3600.0, gt=0)
    risk_threshold: float = Field(0.6, gt=0, lt=1)
    max_body_bytes: int = 1_000_000
    max_batch: int = Field(1000, ge=1)
    """Most customers one scoring or ingestion request may name."""
    score_chunk: int = Field(64, ge=1)
    """Customers per model pass in big requests; agents' requests wait for one chunk at most."""

    holdout: float = Field(0.1, ge=0, le=0.5)
    """Share of at-risk customers deliberately left alone each period (the control group every
    action is measured against); 0 turns the experiment off."""
    explore: float = Field(0.0, ge=0, le=1)
    """Share of at-risk customers whose first suggested action is drawn at random among those
    that fit them (measures actions the playbook would rarely pick first)."""
    experiment_period_days: int = Field(30, ge=1)
    """Length of an assignment period: a customer's arm is stable within it."""
    uplift_min_sample: int = Field(200, ge=1)
    """Customers per arm before a measured effect ranks the actions instead of the priority."""
    value_per_customer: float = Field(100.0, ge=0)
    """What keeping one customer is worth, in the unit of the actions' cost."""
    explain_cache: int = Field(4096, ge=0)
    """Finished explanations kept in memory by snapshot (0: off); a new event is a miss."""
    precompute_top: int = Field(0, ge=0)
    """After each daily rescoring, explain the riskiest N customers ahead of agents (LLM
    included), so their first look is instant (RETENTION_PRECOMPUTE_TOP)."""
    precompute_langs: str = "en"
    """Languages the precomputed explanations are written in, comma-separated (en, zh)."""

    rate_limit: int = Field(600, ge=0)
    """Requests per API key and minute (per process); 0: unlimited. Over it: 429, Retry-After."""
    audit_days: int = Field(365, ge=1)
    """How long the access log (who read which customer) is kept."""
    max_report_jobs: int = Field(2, ge=1)
    """Report jobs one key may have queued or running at once."""
    cors_origins: str = ""
    """Browser origins allowed to call the API, comma-separated; empty: none (the page is
    served by the API itself and needs no CORS)."""

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'retention.db'}"

    @property
    def store_path(self) -> Path:
        return self.chroma_path or self.home / "chroma"

    @property
    def reports_path(self) -> Path:
        return self.home / "reports"

    @property
    def models_path(self) -> Path:
        return self.home / "models"
