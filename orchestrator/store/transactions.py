"""Transactions over one engine: the connection handling every part of the SQL store shares.

A part asks `Transactions` for a connection (`write`, `read`) and runs its
statements on it; it never opens one of its own. A thread may hold one
pooled connection across calls (`holding_connection`) and run a block of
calls as one transaction (`together`): the dispatcher records a batch's
outcomes with one commit. Inside `together`, writes nothing in the block
reads back may be deferred to its end (`defer`), one statement per kind.

Driver errors are translated to `StoreError` here, once (`translated`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, SQLAlchemyError

from ..errors import StoreError, UnstorableError
from .bulk import insert_rows
from .connection import READ_ONLY, READ_WRITE

__all__ = ["Transactions", "translated"]


class Transactions:
    """Hands out connections in transactions, joining the thread's `together` block if any."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self._held = threading.local()

    @contextmanager
    def holding_connection(self) -> Iterator[None]:
        """Run this thread's store calls on one pooled connection until the block ends.

        Each call is still its own transaction; the connection is checked out
        (and, on PostgreSQL, pinged) once instead of once per call. The
        dispatcher holds one for each batch it dispatches.
        """
        if getattr(self._held, "connection", None) is not None:
            yield
            return
        try:
            with self.engine.connect() as connection:
                self._held.connection = connection
                try:
                    yield
                finally:
                    self._held.connection = None
        except SQLAlchemyError as exc:
            raise StoreError(f"store connection failed: {exc.__class__.__name__}") from exc

    @contextmanager
    def together(self) -> Iterator[None]:
        """Run this thread's store calls in the block as one transaction.

        The dispatcher records a whole batch's outcomes at once: one commit
        instead of one per message. An error in any call rolls the block back.
        """
        with self.holding_connection():
            held: Connection = self._held.connection
            if getattr(self._held, "joined", False):
                yield
                return
            try:
                with held.begin():
                    self._held.joined = True
                    self._held.later = {}
                    try:
                        yield
                        self.flush_deferred(held)
                    finally:
                        self._held.joined = False
                        self._held.later = {}
            except SQLAlchemyError as exc:
                raise translated(exc, "store write failed") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that may write (on SQLite it takes the write lock as it begins)."""
        with self._transaction(READ_WRITE) as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: one snapshot, and no write lock on SQLite.

        Inside `together` it joins the block's transaction, which reads as well.
        """
        with self._transaction(READ_ONLY) as connection:
            yield connection

    def defer(self, c: Connection, statement: Any, parameters: dict[str, Any]) -> None:
        """Execute now, or, inside `together`, with its kind at the end of the block.

        For writes nothing in the block reads back (audit rows, closed attempts):
        one statement per kind instead of one round trip per message.
        """
        self.defer_all(c, statement, [parameters])

    def defer_all(self, c: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
        """`defer` of several rows: outside `together`, still one statement of them all."""
        if not rows:
            return
        if getattr(self._held, "joined", False):
            for parameters in rows:
                # One statement needs one set of columns: rows are grouped by theirs.
                key = (statement, frozenset(parameters))
                self._held.later.setdefault(key, []).append(parameters)
        else:
            self._execute(c, statement, rows)

    def deferring(self, statement: Any) -> bool:
        """Whether writes of `statement` wait for the end of this thread's block."""
        later: dict[Any, list[dict[str, Any]]] = getattr(self._held, "later", {})
        return any(s is statement for s, _ in later)

    def flush_deferred(self, c: Connection, only: Any = None) -> None:
        """Execute the deferred writes now: each kind of insert as one statement
        on PostgreSQL (`bulk.insert_rows`), anything else as one executemany.

        One statement, not one per row, matters beyond speed: the audit's tally
        trigger (migration 0016) takes its locks per statement, in one order.
        Row by row, two batches auditing two messages in opposite orders would
        each hold one lock and wait for the other's (a deadlock, and a batch of
        sends whose outcome is lost until `find` settles it). So a flush in the
        middle of a block names the kind it needs written (`only`): the audit
        rows stay for the one statement at the end.
        """
        later: dict[Any, list[dict[str, Any]]] = self._held.later
        now = {kind: rows for kind, rows in later.items() if only is None or kind[0] is only}
        self._held.later = {kind: rows for kind, rows in later.items() if kind not in now}
        for (statement, _), rows in now.items():
            self._execute(c, statement, rows)

    def _execute(self, c: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
        if self.dialect == "postgresql" and _plain_insert(statement):
            insert_rows(c, statement.table, rows)
        else:
            c.execute(statement, rows[0] if len(rows) == 1 else rows)

    @contextmanager
    def _transaction(self, begin: Mapping[str, str]) -> Iterator[Connection]:
        held: Connection | None = getattr(self._held, "connection", None)
        try:
            if held is not None and getattr(self._held, "joined", False):
                if self.dialect == "postgresql":
                    # A refused statement aborts a PostgreSQL transaction: a savepoint
                    # confines it to this call, so one message's bad value does not
                    # undo the rest of the batch it is recorded with.
                    with held.begin_nested():
                        yield held
                else:
                    yield held
            elif held is not None:
                held.execution_options(**begin)
                try:
                    with held.begin():
                        yield held
                finally:
                    held.execution_options(**READ_WRITE)
            else:
                with self.engine.connect() as connection:
                    connection.execution_options(**begin)
                    with connection.begin():
                        yield connection
        except SQLAlchemyError as exc:
            raise translated(exc, "store operation failed") from exc


def _plain_insert(statement: Any) -> bool:
    """An insert of rows as given: `insert_rows` would drop a dialect's own clause
    (ON CONFLICT), a FROM SELECT, RETURNING, values or prefixes of its own."""
    return (
        type(statement) is Insert
        and statement.select is None
        and not statement._returning
        and not statement._return_defaults
        and statement._values is None
        and not statement._multi_values
        and not statement._prefixes
        and statement._post_values_clause is None
    )


def translated(exc: SQLAlchemyError, what: str) -> StoreError:
    """The driver's error as ours: a refused value apart from a store that failed."""
    if isinstance(exc, DataError):
        return UnstorableError(f"{what}: a value the store refuses ({exc.__class__.__name__})")
    return StoreError(f"{what}: {exc.__class__.__name__}")
