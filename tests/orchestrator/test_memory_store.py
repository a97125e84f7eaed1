"""The in-memory store: what it promises beyond the processor and dispatcher suites it runs.

Those suites (tests/orchestrator/runtime/test_processor.py, test_dispatcher.py)
run on it as on SQLite and PostgreSQL; these tests hold what they do not reach.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.actions import ScheduleMessage
from orchestrator.clock import VirtualClock
from orchestrator.engine import advance
from orchestrator.errors import StoreError
from orchestrator.event import Channel
from orchestrator.journey import Journey, ScheduledMessage
from orchestrator.memory_journal import Journal, JournaledDict, JournaledList
from orchestrator.memory_store import MemoryStore
from orchestrator.message_status import MessageStatus
from orchestrator.ports import OutboxEntry, Sent, Settlement
from orchestrator.runtime import EventProcessor, FlowRegistry
from tests.builders import T0, at, make_event, make_flow, make_patient
from tests.conftest import ROOT


def test_importing_the_memory_store_loads_no_sqlalchemy() -> None:
    code = (
        "import sys, orchestrator.memory_store\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_an_error_inside_a_unit_writes_nothing_of_it() -> None:
    store = MemoryStore()
    flow = make_flow()
    message = _scheduled_message(flow.id)

    with pytest.raises(RuntimeError), store.unit(T0) as unit:
        unit.mark_processed(make_event(start=at(days=8)))
        unit.schedule(message, "evt-1")
        raise RuntimeError("the batch broke")

    assert store.messages() == []
    assert store.audit() == []
    with store.unit(T0) as unit:
        assert unit.processed(["evt-1"]) == set()


def test_an_error_inside_together_puts_back_every_write_of_the_block() -> None:
    store = MemoryStore()
    with store.unit(T0) as unit:
        unit.schedule(_scheduled_message(make_flow().id), "evt-1")
    (claim,) = store.claim_due(T0, "d", T0 + timedelta(minutes=2), 10)

    with pytest.raises(StoreError), store.together():
        store.finish(claim.message, "d", T0, "suppressed", "consent")
        raise StoreError("store write failed: OperationalError")

    (row,) = store.messages()
    assert (row.status, row.reason) == ("claimed", None)
    assert [a.status for a in store.audit()] == ["scheduled"]


def test_a_flow_version_is_recorded_once() -> None:
    store = MemoryStore()
    store.record_flow_version("f", 1, "{}", T0)

    with pytest.raises(StoreError):
        store.record_flow_version("f", 1, "{}", T0)
    assert list(store.flow_versions()) == [("f", 1)]


# What a transaction may write, each on whatever the store holds when it runs.
Write = Callable[[MemoryStore, EventProcessor, int], object]
OWNER = "d"


def _book(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    patient = make_patient(f"p-{n % 3}", phone=f"+1555555010{n % 3}")
    return processor.process([make_event(id=f"evt-{n}", patient=patient, start=at(days=8 + n))])


def _cancel(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    patient = make_patient(f"p-{n % 3}")
    return processor.process([make_event("appointment.cancelled", id=f"c-{n}", patient=patient)])


def _claim(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    return store.claim_due(at(days=30), OWNER, at(days=31), 1 + n % 3)


def _in(store: MemoryStore, status: str) -> list[ScheduledMessage]:
    return [r.message for r in store._t.messages.values() if r.status == status]


def _begin(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    keys = {m.key: Channel.SMS for m in _in(store, MessageStatus.CLAIMED)}
    return store.begin_sends(keys, OWNER, at(days=30))


def _sent(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    sends = [
        Sent(m, at(days=30), Channel.SMS, f"pid-{n}", "en")
        for m in _in(store, MessageStatus.SENDING)
    ]
    return store.finish_sent(sends, OWNER)


def _settle_sent(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    return [
        store.settle_sent(m.key, f"pid-{n}", at(days=30), "found") for m in _in(store, "sending")
    ]


def _reschedule(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    return [
        store.reschedule(m, OWNER, at(days=30), at(days=32 + n), "quiet_hours", attempt_outcome="x")
        for m in _in(store, MessageStatus.CLAIMED) + _in(store, MessageStatus.SENDING)
    ]


def _fail(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    return [store.fail_held(m.key, OWNER, at(days=30), "x" * 300) for m in _in(store, "claimed")]


def _deliver(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    return store.engaged("open", at(days=31), provider_id=f"pid-{n}")


def _aside(store: MemoryStore, processor: EventProcessor, n: int) -> object:
    """Writes beside the messages: rejects, the outbox, receipts, the archive, flow versions."""
    store.reject(b"{", "api", "malformed", at(days=n))
    store.outbox_add(OutboxEntry(f"k-{n}", "sms", "+15555550101", None, "hi", None, at(days=n)))
    store.first_receipt("twilio", [f"r-{n}", "r-0"], at(days=n))
    (kept,) = store.keep("hl7v2", [b"MSH|"], at(days=n))
    store.settle([Settlement(kept, "accepted", f"evt-{n}"), Settlement(1, "rejected")])
    store.record_flow_version(f"f-{n}", n, "{}", at(days=n))
    return kept


WRITES: list[Write] = [
    _book,
    _cancel,
    _claim,
    _begin,
    _sent,
    _settle_sent,
    _reschedule,
    _fail,
    _deliver,
    _aside,
]
_writes = st.lists(st.tuples(st.sampled_from(WRITES), st.integers(0, 5)), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_writes, inside=_writes)
def test_an_error_after_any_writes_puts_the_store_back_exactly_as_it_was(
    before: list[tuple[Write, int]], inside: list[tuple[Write, int]]
) -> None:
    store = MemoryStore()
    processor = EventProcessor(store, FlowRegistry.of({"test-flow": make_flow()}), VirtualClock(T0))
    for i, (write, n) in enumerate(before):
        _attempt(write, store, processor, 100 + 10 * i + n)
    prior = copy.deepcopy(store._t.state())

    with pytest.raises(RuntimeError), store.together():
        for i, (write, n) in enumerate(inside):
            _attempt(write, store, processor, 200 + 10 * i + n)
        raise RuntimeError("the block broke")

    assert store._t.state() == prior
    assert store._t.journal.entries is None  # closed: the next write is not undone by accident


def _attempt(write: Write, store: MemoryStore, processor: EventProcessor, n: int) -> None:
    with contextlib.suppress(StoreError):  # a flow version recorded twice: refused, go on
        write(store, processor, n)


def test_a_committed_block_keeps_its_writes_and_a_later_error_undoes_only_its_own() -> None:
    store = MemoryStore()
    with store.together():
        store.reject(b"1", "api", "first", T0)
    with pytest.raises(RuntimeError), store.together():
        store.reject(b"2", "api", "second", T0)
        raise RuntimeError

    assert [r.body for r in store.rejected()] == [b"1"]


def test_a_write_the_journal_cannot_undo_is_refused() -> None:
    journal = Journal()
    table: JournaledDict[str, int] = JournaledDict(journal)
    rows: JournaledList[int] = JournaledList(journal)

    for write in (lambda: table.pop("a"), table.clear, lambda: rows.extend([1]), rows.clear):
        with pytest.raises(TypeError):
            write()


def test_audit_and_message_reasons_are_cut_as_the_sql_reason_column_cuts_them() -> None:
    store = MemoryStore()
    with store.unit(T0) as unit:
        unit.schedule(_scheduled_message(make_flow().id), "evt-1")
    (claim,) = store.claim_due(T0, "d", T0 + timedelta(minutes=2), 10)

    store.finish(claim.message, "d", T0, MessageStatus.SUPPRESSED, "\x00" + "r" * 300)

    (row,) = store.messages()
    (_, audited) = store.audit()
    assert audited.reason == row.reason == "\ufffd" + "r" * 199


def _scheduled_message(flow_id: str) -> ScheduledMessage:
    """The first message a booking schedules on the test flow."""
    flow = make_flow()
    decision = advance(Journey.start("p-1", flow_id), make_event(start=at(days=8)), flow, T0)
    return next(a.message for a in decision.actions if isinstance(a, ScheduleMessage))
