"""Opening a store: SQLAlchemy engines for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from ..errors import StoreError

__all__ = ["connect"]


def connect(url: str, *, echo: bool = False) -> Engine:
    """A SQLAlchemy engine for `url`; SQLite in WAL mode with a busy timeout.

    Raises:
        StoreError: the URL names no usable database driver.
    """
    try:
        engine = create_engine(url, echo=echo, pool_pre_ping=not url.startswith("sqlite"))
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot open store {_redacted(url)}: {exc.__class__.__name__}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    # WAL lets readers (the API) run beside the one writer; NORMAL is durable
    # across a process crash, which is what the embedded runtime must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"
