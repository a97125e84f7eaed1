"""Schema migrations (Alembic), run on a SQLAlchemy engine.

`orchestrator db upgrade` and `orchestrator run` call `upgrade`; `/readyz`
calls `pending` to report a store whose schema is behind the code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .connection import READ_ONLY

__all__ = ["head", "pending", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head() -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` (default: the newest)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending(engine: Engine) -> bool:
    """Whether the store's schema is behind the code."""
    with engine.connect() as connection:
        connection.execution_options(**READ_ONLY)
        current = MigrationContext.configure(connection).get_current_revision()
    return current != head()
