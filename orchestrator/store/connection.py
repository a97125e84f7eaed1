"""Opening a store: SQLAlchemy engines for SQLite (WAL) and PostgreSQL.

On SQLite every transaction is a real one. The sqlite3 driver, left to
itself, sends no BEGIN before a SELECT: a "transaction" that reads and then
writes would run its read in autocommit mode, and a cancel committed between
the two would be overwritten. So the driver's own transaction handling is
off and each transaction begins with an explicit BEGIN (SQLAlchemy's
documented pysqlite recipe): IMMEDIATE by default, DEFERRED for the paths
that only read (`READ_ONLY`).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from ..errors import StoreError

__all__ = ["READ_ONLY", "READ_WRITE", "connect"]

# The execution option that picks how a SQLite transaction begins.
_BEGIN: Final = "orchestrator_sqlite_begin"
# For a connection that only reads in its transactions. A writer takes the
# write lock when it begins (IMMEDIATE), so it waits for another writer at
# its start, under the busy timeout, never halfway through after reading a
# snapshot another writer has since changed (SQLite cannot upgrade such a
# read to a write: it fails at once with "database is locked"). A reader
# needs no lock: in WAL mode a DEFERRED transaction reads one consistent
# snapshot beside the writer, so the API's reads neither wait for nor hold
# up the processor and the dispatcher.
READ_ONLY: Final = {_BEGIN: "DEFERRED"}
# The default, to set a connection back after `READ_ONLY`.
READ_WRITE: Final = {_BEGIN: "IMMEDIATE"}


def connect(url: str, *, echo: bool = False) -> Engine:
    """A SQLAlchemy engine for `url`; SQLite in WAL mode, with real transactions and a busy timeout.

    Raises:
        StoreError: the URL names no usable database driver.
    """
    try:
        options: dict[str, Any] = {}
        if make_url(url).get_backend_name() == "postgresql":
            # The store's isolation, whatever the server's default: the audit's tally
            # trigger (migration 0016) reads what the writer before it committed, which
            # a REPEATABLE READ snapshot taken before its lock would not show.
            options["isolation_level"] = "READ COMMITTED"
        engine = create_engine(
            url, echo=echo, pool_pre_ping=not url.startswith("sqlite"), **options
        )
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot open store {_redacted(url)}: {exc.__class__.__name__}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connected)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connected(connection: Any, _: ConnectionPoolEntry) -> None:
    # The driver's implicit transactions off: it would BEGIN only before a
    # write, and COMMIT on its own before DDL. `_sqlite_begin` begins instead.
    connection.isolation_level = None
    cursor = connection.cursor()
    # Outside any transaction, as journal_mode must be. WAL lets readers (the
    # API) run beside the one writer; NORMAL is durable across a process
    # crash, which is what the embedded runtime must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"
