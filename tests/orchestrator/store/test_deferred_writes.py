"""A dispatch batch's deferred writes (`Transactions.together`), flushed at its end, on PostgreSQL.

Two batches that audit the same two messages in opposite orders must not
deadlock on the audit's tally locks (migration 0016 takes one per flow,
message and status): a deadlocked batch loses the record of sends that went out.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator.store import connect
from orchestrator.store.ledger_statements import INSERT_AUDIT
from orchestrator.store.transactions import Transactions
from tests.builders import T0, audit_row_data

# The lock the tally trigger takes for (flow, message, status): 0016's `_LOCKS` and key.
_LOCK = "SELECT pg_advisory_lock(31249, hashtext(:f || chr(31) || :m || chr(31) || 'sent'))"
_UNLOCK = "SELECT pg_advisory_unlock(31249, hashtext(:f || chr(31) || :m || chr(31) || 'sent'))"
_WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


def audit(flow: str, message: str, key: str, minute: int) -> dict[str, Any]:
    return audit_row_data(
        key,
        "sent",
        at=T0 + timedelta(minutes=minute),
        patient_id=f"p-{key}",
        flow_id=flow,
        episode_id=f"ep-{key}",
        message_id=message,
        recipient="patient",
        channel="sms",
        language="en",
    )


@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    engine = connect(pg_database)
    try:
        yield engine
    finally:
        engine.dispose()


def test_two_batches_auditing_two_messages_in_opposite_orders_both_commit(engine: Engine) -> None:
    flow = f"deadlock-{uuid.uuid4().hex[:8]}"
    first = [audit(flow, "x", "k1", 0), audit(flow, "y", "k2", 1)]
    second = [audit(flow, "y", "k3", 2), audit(flow, "x", "k4", 3)]
    holder = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    for message in ("x", "y"):
        holder.execute(text(_LOCK), {"f": flow, "m": message})

    def batch(rows: list[dict[str, Any]]) -> None:
        transactions = Transactions(engine)
        with transactions.together(), transactions.write() as c:
            for row in rows:
                transactions.defer(c, INSERT_AUDIT, row)
        # The flush runs as the block ends, and waits there on the held locks.

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(batch, rows) for rows in (first, second)]
        # Row by row, the first batch waits on x and the second on y; as one
        # statement, each waits on the lock the trigger takes first.
        give_up = time.monotonic() + 30
        while holder.execute(text(_WAITING)).scalar_one() < 2:
            assert time.monotonic() < give_up, "the batches never reached the held locks"
            assert not any(f.done() for f in done), [f.exception() for f in done]
            time.sleep(0.005)
        for message in ("x", "y"):
            holder.execute(text(_UNLOCK), {"f": flow, "m": message})
        errors = [f.exception(timeout=60) for f in done]

    assert errors == [None, None]
    counted = holder.execute(
        text(
            "SELECT message_id, sum(records), sum(keys) FROM message_tallies "
            "WHERE flow_id = :f GROUP BY message_id ORDER BY message_id"
        ),
        {"f": flow},
    ).all()
    holder.close()
    assert [tuple(r) for r in counted] == [("x", 2, 2), ("y", 2, 2)]


def claimed(engine: Engine, flow: str, rows: list[tuple[str, str, str]]) -> None:
    """Messages (key, message, owner) of `flow`, each claimed by its owner."""
    with engine.begin() as c:
        for key, message, owner in rows:
            c.execute(
                text(
                    "INSERT INTO scheduled_messages (key, patient_id, recipient, flow_id,"
                    " flow_version, episode_id, stage_id, message_id, payload, status, due_at,"
                    " attempts, lease_owner, lease_until, created_at, updated_at)"
                    " VALUES (:key, :patient, 'patient', :flow, 1, :episode, 'booked', :message,"
                    " '{}', 'claimed', now(), 0, :owner, now() + interval '1 hour', now(), now())"
                ),
                {
                    "key": key,
                    "patient": f"p-{key}",
                    "flow": flow,
                    "episode": f"ep-{key}",
                    "message": message,
                    "owner": owner,
                },
            )


def test_two_batches_failing_two_messages_in_opposite_orders_both_commit(engine: Engine) -> None:
    # The dispatcher fails a message it cannot read (`fail_held`) inside its batch's
    # block; audited at once, each failure took its tally lock mid-block.
    from orchestrator.store.sql import SqlStore

    flow = f"failing-{uuid.uuid4().hex[:8]}"
    keys = {n: f"{flow}-k{n}" for n in range(4)}
    claimed(
        engine,
        flow,
        [(keys[0], "x", "d1"), (keys[1], "y", "d1"), (keys[2], "y", "d2"), (keys[3], "x", "d2")],
    )
    store = SqlStore(engine)
    halfway = threading.Barrier(2, timeout=30)

    def batch(owner: str, first: str, second: str) -> None:
        with store.together():
            store.lock_messages([first, second])
            assert store.fail_held(first, owner, T0, "decode:patient:ValueError")
            halfway.wait()
            assert store.fail_held(second, owner, T0, "decode:patient:ValueError")

    with ThreadPoolExecutor(2) as pool:
        done = [
            pool.submit(batch, "d1", keys[0], keys[1]),
            pool.submit(batch, "d2", keys[2], keys[3]),
        ]
        errors = [f.exception(timeout=60) for f in done]

    assert errors == [None, None]
    with engine.connect() as c:
        statuses = c.execute(
            text("SELECT status, count(*) FROM scheduled_messages WHERE flow_id = :f GROUP BY 1"),
            {"f": flow},
        ).all()
        audited = c.execute(
            text(
                "SELECT message_id, status, template, count(*) FROM audit_log"
                " WHERE flow_id = :f GROUP BY 1, 2, 3 ORDER BY 1"
            ),
            {"f": flow},
        ).all()
    assert [tuple(r) for r in statuses] == [("failed", 4)]
    assert [tuple(r) for r in audited] == [("x", "failed", "", 2), ("y", "failed", "", 2)]


def test_the_store_reads_committed_whatever_the_servers_default(pg_database: str) -> None:
    # Under REPEATABLE READ the tally trigger would read a snapshot from before
    # the lock it waited for, and count a key the writer before it had counted.
    options = "options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
    engine = connect(f"{pg_database}?{options}")
    try:
        with engine.connect() as c:
            assert c.execute(text("SHOW default_transaction_isolation")).scalar_one() == (
                "repeatable read"
            )
            assert c.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"
    finally:
        engine.dispose()


def test_a_flush_in_the_middle_of_a_block_leaves_the_audit_for_its_end(engine: Engine) -> None:
    from orchestrator.store.ledger_statements import CLOSE_ATTEMPT

    flow = f"middle-{uuid.uuid4().hex[:8]}"
    transactions = Transactions(engine)
    with transactions.together(), transactions.write() as c:
        transactions.defer(c, INSERT_AUDIT, audit(flow, "x", f"{flow}-k", 0))
        closed = {
            "attempt_key": f"{flow}-k",
            "finished_at": T0,
            "outcome": "sent",
            "error": None,
            "provider_id": None,
        }
        transactions.defer(c, CLOSE_ATTEMPT, closed)

        transactions.flush_deferred(c, CLOSE_ATTEMPT)

        assert not transactions.deferring(CLOSE_ATTEMPT)
        assert transactions.deferring(INSERT_AUDIT)
    with engine.connect() as c:
        written = c.execute(
            text("SELECT count(*) FROM audit_log WHERE flow_id = :f"), {"f": flow}
        ).scalar_one()
    assert written == 1
