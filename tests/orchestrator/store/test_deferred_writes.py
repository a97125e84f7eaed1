"""A dispatch batch's deferred writes (`Transactions.together`), flushed at its end, on PostgreSQL.

Two batches that audit the same two messages in opposite orders must not
deadlock on the audit's tally locks (migration 0016 takes one per flow,
message and status): a deadlocked batch loses the record of sends that went out.
"""

from __future__ import annotations

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
from tests.builders import T0

# The lock the tally trigger takes for (flow, message, status): 0016's `_LOCKS` and key.
_LOCK = "SELECT pg_advisory_lock(31249, hashtext(:f || chr(31) || :m || chr(31) || 'sent'))"
_UNLOCK = "SELECT pg_advisory_unlock(31249, hashtext(:f || chr(31) || :m || chr(31) || 'sent'))"
_WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


def audit(flow: str, message: str, key: str, minute: int) -> dict[str, Any]:
    return {
        "at": T0 + timedelta(minutes=minute),
        "event_id": "e-1",
        "patient_id": f"p-{key}",
        "flow_id": flow,
        "flow_version": 1,
        "episode_id": f"ep-{key}",
        "stage_id": "booked",
        "message_id": message,
        "key": key,
        "recipient": "patient",
        "channel": "sms",
        "language": "en",
        "template": "t",
        "due_at": T0,
        "status": "sent",
        "reason": None,
    }


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
