"""Configuration: one settings class read from `ORCHESTRATOR_*` variables.

Only entry points build it; everything below them receives values.
Command-line flags override it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    flows: Path = Path("flows")
    templates: Path = Path("templates")
    db: str = "sqlite:///orchestrator.db"
    default_region: str = Field("US", description="region for phone numbers written without +")

    host: str = "127.0.0.1"
    port: int = 8000
    api_token: SecretStr | None = Field(
        None, description="bearer token; required to bind beyond loopback"
    )
    max_body_bytes: int = 5 * 1024 * 1024

    org_name: str = "Riverside Health"
    org_phone: str = "+1 555 0100"
    public_url: str = "http://127.0.0.1:8000"
    portal_url: str = "https://portal.example.org"

    dispatch_batch: int = 100
    dispatch_poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0

    twilio_api_base: str | None = None
    sendgrid_api_base: str | None = None

    # The Kafka runtime (`orchestrator worker`, `topics create`, `ingest --broker`).
    broker: str = Field("kafka://127.0.0.1:9092", description="kafka://HOST:PORT")
    kafka_group: str = Field("orchestrator", description="consumer group (the Faust app id)")
    kafka_partitions: int = 8
    kafka_batch: int = 500
    kafka_batch_seconds: float = 0.2
    kafka_session_timeout_seconds: float = 30.0
    kafka_commit_seconds: float = 1.0
