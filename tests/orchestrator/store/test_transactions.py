"""Transactions and conditional writes: what the store does when writers race.

Issue 13, defect 1: the sqlite3 driver sent no BEGIN before a SELECT, so
`claim_due` read its candidates outside any transaction and a cancel
committed before its UPDATE was overwritten by "claimed". The SQLite
tests here pin the transaction model (IMMEDIATE for writers, DEFERRED for
readers); the contract tests drive a write between a conditional write's
read and its UPDATE, on both backends, and check that the UPDATE sees it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from orchestrator.store import SqlStore, connect
from tests.builders import T0, at
from tests.orchestrator.store.test_store import LEASE, lease_of, message, row, schedule


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SqlStore]:
    engine = connect(sqlite_url)
    yield SqlStore(engine)
    engine.dispose()


def other_writer(store: SqlStore) -> sqlite3.Connection:
    """A plain sqlite3 connection to the same file that gives up at once on a lock."""
    path = store.engine.url.database
    assert path is not None
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_a_sqlite_store_transaction_takes_the_write_lock_as_it_begins(
    sqlite_store: SqlStore,
) -> None:
    other = other_writer(sqlite_store)
    try:
        with sqlite_store.transactions.write() as c:
            c.exec_driver_sql("SELECT 1")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def test_a_sqlite_read_reads_one_snapshot_and_leaves_writers_free(
    sqlite_store: SqlStore,
) -> None:
    schedule(sqlite_store, message("m-1"))
    other = other_writer(sqlite_store)
    try:
        with sqlite_store.transactions.read() as c:
            before = c.exec_driver_sql("SELECT status FROM scheduled_messages").scalar_one()
            # A reader holds no write lock: another writer commits beside it.
            other.execute("UPDATE scheduled_messages SET status = 'cancelled'")
            after = c.exec_driver_sql("SELECT status FROM scheduled_messages").scalar_one()
    finally:
        other.close()
    assert (before, after) == ("scheduled", "scheduled")
    assert row(sqlite_store, "m-1").status == "cancelled"


def test_migrations_run_inside_one_sqlite_transaction(tmp_path: Any) -> None:
    from orchestrator.store import pending, upgrade

    engine = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        upgrade(engine)
        assert not pending(engine)
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        engine.dispose()


def write_before_update(store: SqlStore, statement_start: str, sql: str) -> list[bool]:
    """Run `sql` (on the same transaction's driver connection) just before the first UPDATE
    whose SQL starts with `statement_start`: as if another writer committed it between the
    conditional write's read and its update. Returns a list that holds True once it ran."""
    ran: list[bool] = []

    def inject(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(statement_start) and not ran:
            ran.append(True)
            cursor.connection.cursor().execute(sql)

    event.listen(store.engine, "before_cursor_execute", inject)
    return ran


def test_a_cancel_committed_between_claim_dues_read_and_update_is_not_overwritten(
    store: SqlStore,
) -> None:
    schedule(store, message("m-1"), message("m-2"))
    ran = write_before_update(
        store,
        "UPDATE scheduled_messages SET status=",
        "UPDATE scheduled_messages SET status = 'cancelled' WHERE key = 'm-1'",
    )

    claims = store.claim_due(at(hours=1), "a", at(hours=1) + LEASE, 10)

    assert ran == [True]
    assert [c.message.key for c in claims] == ["m-2"]
    assert lease_of(store, "m-1") == ("cancelled", None, None)
    assert lease_of(store, "m-2")[:2] == ("claimed", "a")


def test_a_lease_renewed_between_claim_dues_read_and_update_keeps_its_owner(
    store: SqlStore,
) -> None:
    schedule(store, message("m-1"))
    store.claim_due(T0, "a", T0 + LEASE, 10)
    later = T0 + LEASE * 2
    # The first claimer renews just before a second one, which read the row as abandoned, takes it.
    ran = write_before_update(
        store,
        "UPDATE scheduled_messages SET status=",
        "UPDATE scheduled_messages SET lease_until = '2099-01-01 00:00:00.000000' "
        "WHERE key = 'm-1'",
    )

    claims = store.claim_due(later, "b", later + LEASE, 10)

    assert ran == [True]
    assert claims == []
    assert lease_of(store, "m-1")[:2] == ("claimed", "a")
