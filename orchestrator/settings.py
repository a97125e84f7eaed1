"""Configuration: one settings class read from `ORCHESTRATOR_*` variables.

Only entry points build it; everything below them receives values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    flows: Path = Path("flows")
    templates: Path = Path("templates")
    db: str = "sqlite:///orchestrator.db"
    default_region: str = "US"
