"""A backlog falling due costs the dispatcher statements per batch, not per message.

Issue 16: a worker replaying weeks of events finds hundreds of due messages
stale. Each was expired with its own update inside a savepoint (three round
trips), and the batch's audit rows went as an executemany, which the server
runs as one statement per row, each tallied by the audit log's statement
trigger on its own. Now what the gate settles without a send is recorded with
one update per (status, reason), and deferred inserts are one statement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from orchestrator.memory_store import MemoryStore
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime


def backlog(runtime: Runtime, patients: int) -> None:
    """`patients` bookings at T0, then the clock past their appointments: four messages
    each due, every one expired (its own expiry passed, or stale)."""
    runtime.process(
        *(
            make_event(
                patient=make_patient(f"p-{n}", phone=f"+1555010{n:04d}"[:12]),
                appointment_id=f"a-{n}",
                start=at(days=10),
            )
            for n in range(patients)
        )
    )
    runtime.clock.move_to(at(days=10, hours=12))


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[tuple[str, bool]]]:
    """Each statement the store runs in the block (whitespace folded), and whether
    it ran as an executemany."""
    seen: list[tuple[str, bool]] = []

    def note(_c: Any, _cursor: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        seen.append((" ".join(statement.split()), many))

    assert not isinstance(runtime.store, MemoryStore)
    engine = runtime.store.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def statements_of_one_tick(runtime: Runtime) -> Counter[tuple[str, bool]]:
    """Each statement's first words (and whether it ran as an executemany) in one tick."""
    with statements(runtime) as seen:
        runtime.dispatcher.tick()
    return Counter((" ".join(text.split()[:3]), many) for text, many in seen)


@pytest.mark.backends("sqlite", "postgresql")
def test_expiring_a_stale_backlog_takes_the_same_statements_for_4_or_24_messages(
    build_runtime: BuildRuntime,
) -> None:
    runtime = build_runtime(stale_after=timedelta(hours=6), batch=4)
    backlog(runtime, 7)

    small = statements_of_one_tick(runtime)
    runtime.dispatcher.batch = 24
    large = statements_of_one_tick(runtime)

    # Every message expired, audited once.
    expired = [m for m in runtime.store.messages() if m.status == "expired"]
    assert len(expired) == 28
    assert {m.reason for m in expired} == {"stale"}
    audited = Counter(a.key for a in runtime.store.audit() if a.status == "expired")
    assert audited == Counter({m.key: 1 for m in expired})
    # The same statements whatever the batch's size: none per message.
    assert large == small
    if runtime.store.engine.dialect.name == "postgresql":
        # The audit rows in one insert, so the tally trigger runs once for the batch.
        assert large[("INSERT INTO audit_log", True)] == 0
        assert large[("INSERT INTO audit_log", False)] == 1


@pytest.mark.backends("memory", "sqlite", "postgresql")
def test_a_message_whose_claim_was_lost_is_neither_expired_nor_audited_by_finish_all(
    build_runtime: BuildRuntime,
) -> None:
    from orchestrator.message_status import MessageStatus
    from orchestrator.ports import Final

    runtime = build_runtime(stale_after=timedelta(hours=6))
    backlog(runtime, 2)
    now = runtime.clock.now()
    claims = runtime.store.claim_due(now, "a", now + timedelta(minutes=2), 10)
    assert len(claims) == 8
    # One claim's lease ran out and another claimer took it over.
    later = now + timedelta(minutes=3)
    taken = runtime.store.claim_due(later, "b", later + timedelta(minutes=2), 1)
    lost = taken[0].message.key

    moved = runtime.store.finish_all(
        [Final(c.message, MessageStatus.EXPIRED, "stale") for c in claims], "a", later
    )

    assert moved == {c.message.key for c in claims} - {lost}
    statuses = {m.key: m.status for m in runtime.store.messages()}
    assert statuses[lost] == "claimed"
    assert not [a for a in runtime.store.audit() if a.key == lost and a.status == "expired"]
    assert sorted(a.key for a in runtime.store.audit() if a.status == "expired") == sorted(moved)


@pytest.mark.backends("postgresql")
def test_finish_all_locks_its_rows_in_key_order_before_it_moves_them(
    build_runtime: BuildRuntime,
) -> None:
    # The processor locks a batch's messages in key order (`unit._write_messages`);
    # an update of many keys locks them in whatever order its plan reads them, so
    # the two could each hold a row the other waits for.
    from orchestrator.message_status import MessageStatus
    from orchestrator.ports import Final

    runtime = build_runtime(stale_after=timedelta(hours=6))
    backlog(runtime, 3)
    now = runtime.clock.now()
    claims = runtime.store.claim_due(now, "a", now + timedelta(minutes=2), 20)
    with statements(runtime) as ran:
        runtime.store.finish_all(
            [Final(c.message, MessageStatus.EXPIRED, "stale") for c in reversed(claims)],
            "a",
            now,
        )

    seen = [text for text, _ in ran]
    first_update = next(i for i, s in enumerate(seen) if s.startswith("UPDATE scheduled_messages"))
    locks = [s for s in seen[:first_update] if s.endswith('COLLATE "C" FOR UPDATE')]
    assert locks, seen
    # Its audit rows in one statement, outside a batch's block too.
    assert [many for text, many in ran if text.startswith("INSERT INTO audit_log")] == [False]
