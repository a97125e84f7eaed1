"""The intake every transport hands its input to, on every store: one result per input, in
order, and each refused input kept exactly once under the transport's source."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import cast

import pytest

from orchestrator.errors import StoreError, UnstorableError
from orchestrator.event import Event
from orchestrator.memory_store import MemoryStore
from orchestrator.ports import (
    ArchivedMessage,
    EventResult,
    EventSink,
    ImportHold,
    InboundArchive,
    Input,
    RejectedInputs,
    Settlement,
)
from orchestrator.runtime.intake import DEFERRED, Intake, IntakeQueue, parse_document
from orchestrator.store import InboundArchive as SqlInboundArchive
from tests import store_reads
from tests.builders import at, make_event, make_event_data, make_flow, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime, Store, inbound_archive

START = at(days=8)


def _failing(build_runtime: BuildRuntime) -> tuple[Runtime, Event]:
    """A runtime whose registry lacks the version p-1's journey is on, and p-1's next event."""
    build_runtime().process(make_event(start=START))
    v2 = make_flow(version=2)
    runtime = build_runtime({v2.id: v2})
    return runtime, make_event("appointment.checked_in", start=START, occurred_at=at(hours=1))


def test_each_input_gets_its_result_in_order_and_each_refusal_is_kept_once(
    build_runtime: BuildRuntime,
) -> None:
    runtime, failing = _failing(build_runtime)
    good = make_event(start=START, patient=make_patient("p-2", phone="+15555550104"))
    bad = {**make_event_data(id="evt-bad"), "type": "x.y"}

    results = runtime.intake.take(
        "api",
        [
            parse_document("item 0", bad, default_region="US", body=b"bad"),
            Input(b"failing", failing),
            Input(b"good", good),
            Input(b"good", good),
        ],
    )

    assert [(r.id, r.status) for r in results] == [
        ("evt-bad", "rejected"),
        (failing.id, "rejected"),
        (good.id, "accepted"),
        (good.id, "duplicate"),
    ]
    kept = sorted((r.body, r.source, r.reason) for r in store_reads.rejected(runtime.store))
    assert [(body, source) for body, source, _ in kept] == [(b"bad", "api"), (b"failing", "api")]
    assert kept[0][2].startswith("item 0: event evt-bad: ")
    assert kept[1][2] == f"event {failing.id}: engine failed: KeyError"


def test_an_event_without_a_body_is_kept_as_its_canonical_json(
    build_runtime: BuildRuntime,
) -> None:
    runtime, failing = _failing(build_runtime)

    [result] = runtime.intake.take("feedback:twilio", [Input(None, failing)])

    assert result.status == "rejected"
    [kept] = store_reads.rejected(runtime.store)
    assert kept.source == "feedback:twilio"
    assert json.loads(kept.body)["id"] == failing.id


class _Down:
    """A processor whose store is unreachable."""

    def process(
        self, events: Sequence[Event], *, hold: ImportHold | None = None
    ) -> list[EventResult]:
        raise StoreError("the store is unavailable")


def test_a_batch_the_store_fails_on_keeps_nothing_so_a_retry_keeps_each_refusal_once(
    runtime: Runtime,
) -> None:
    intake = Intake(_Down(), runtime.store, runtime.clock)
    inputs = [Input.refused(b"not json", "line 1: not JSON"), Input(None, make_event())]

    with pytest.raises(StoreError):
        intake.take("kafka", inputs)

    assert store_reads.rejected(runtime.store) == []
    assert [r.status for r in runtime.intake.take("kafka", inputs)] == ["rejected", "accepted"]
    assert [r.source for r in store_reads.rejected(runtime.store)] == ["kafka"]


class _Blip:
    """Rejected inputs on a store that fails the second row written to it: a transaction
    that holds that row writes nothing (as a real one would not), the rest are kept."""

    def __init__(self, store: RejectedInputs) -> None:
        self.store = store
        self.rows = 0

    def _count(self, n: int) -> None:
        before, self.rows = self.rows, self.rows + n
        if before < 2 <= self.rows:
            raise StoreError("the store blipped")

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        self._count(1)
        self.store.reject(body, source, reason, now)

    def reject_many(self, source: str, refused: Sequence[tuple[bytes, str]], now: datetime) -> None:
        self._count(len(refused))
        self.store.reject_many(source, refused, now)


def test_a_blip_while_keeping_refusals_keeps_none_so_the_retry_keeps_each_once(
    runtime: Runtime,
) -> None:
    intake = Intake(runtime.processor, _Blip(runtime.store), runtime.clock)
    inputs = [
        Input.refused(b"one", "bad 1"),
        Input.refused(b"two", "bad 2"),
        Input(None, make_event(start=START)),
    ]

    with pytest.raises(StoreError):
        intake.take("kafka", inputs)
    assert store_reads.rejected(runtime.store) == []

    # The Kafka handler retries the batch whole: the event was committed the first time.
    assert [r.status for r in intake.take("kafka", inputs)] == ["rejected", "rejected", "duplicate"]
    assert sorted(r.body for r in store_reads.rejected(runtime.store)) == [b"one", b"two"]


@pytest.mark.backends(*EVERY_BACKEND)
def test_a_batch_of_refusals_is_kept_whole_or_not_at_all(store: Store) -> None:
    broken = cast(bytes, None)  # a row the store cannot write

    with pytest.raises((StoreError, TypeError)):
        store.reject_many("kafka", [(b"one", "bad 1"), (broken, "bad 2")], START)
    assert store_reads.rejected(store) == []

    store.reject_many("kafka", [(b"one", "bad 1"), (b"two", "bad 2")], START)
    kept = sorted((r.body, r.source, r.reason) for r in store_reads.rejected(store))
    assert kept == [(b"one", "kafka", "bad 1"), (b"two", "kafka", "bad 2")]


def _queued(runtime: Runtime) -> list[ArchivedMessage]:
    return inbound_archive(runtime.store).pending(DEFERRED, 100)


def _settled(runtime: Runtime) -> list[tuple[str, str | None]]:
    archive = inbound_archive(runtime.store)
    rows = (
        archive.inbound_messages()
        if isinstance(archive, MemoryStore)
        else cast(SqlInboundArchive, archive).messages()
    )
    return [(m["status"], m["event_id"]) for m in sorted(rows, key=lambda m: m["id"])]


@pytest.mark.backends(*EVERY_BACKEND)
def test_a_queued_event_is_committed_at_once_and_taken_only_when_drained(
    runtime: Runtime,
) -> None:
    event = make_event(start=START)
    queue = runtime.deferred

    assert queue.take("feedback:twilio", [Input(None, event)]) == [EventResult(event.id, "queued")]
    assert runtime.store.messages() == []
    [kept] = _queued(runtime)
    assert kept.protocol == "deferred:feedback:twilio"
    assert json.loads(kept.body)["id"] == event.id

    assert runtime.deferred.drain() == 1  # a new queue: what is queued is in the store
    assert runtime.store.messages() and _queued(runtime) == []
    assert _settled(runtime) == [("accepted", event.id)]
    assert queue.drain() == 0


def test_a_refused_input_handed_to_the_queue_is_kept_at_once(runtime: Runtime) -> None:
    [result] = runtime.deferred.take("feedback:twilio", [Input.refused(b"{", "not JSON", id="x")])

    assert (result.id, result.status) == ("x", "rejected")
    assert _queued(runtime) == []
    [kept] = store_reads.rejected(runtime.store)
    assert (kept.body, kept.source, kept.reason) == (b"{", "feedback:twilio", "not JSON")


def test_a_queued_batch_the_store_fails_on_stays_queued(runtime: Runtime) -> None:
    queue = IntakeQueue(
        Intake(_Down(), runtime.store, runtime.clock), inbound_archive(runtime.store)
    )
    queue.take("feedback:twilio", [Input(None, make_event(start=START))])

    with pytest.raises(StoreError):
        queue.drain()

    assert len(_queued(runtime)) == 1
    assert store_reads.rejected(runtime.store) == []


class _Poisoned:
    """The processor, failing for good on one event id (a bug, not the store)."""

    def __init__(self, inner: EventSink, poison: str, error: Exception) -> None:
        self.inner, self.poison, self.error = inner, poison, error

    def process(
        self, events: Sequence[Event], *, hold: ImportHold | None = None
    ) -> Sequence[EventResult]:
        if any(e.id == self.poison for e in events):
            raise self.error
        return self.inner.process(events, hold=hold)


@pytest.mark.parametrize("error", [ValueError("a bug"), UnstorableError("a NUL")])
def test_a_poison_queued_event_is_kept_as_rejected_and_leaves_the_queue(
    runtime: Runtime, error: Exception
) -> None:
    good = make_event(start=START)
    poison = make_event(start=START, id="evt-poison", patient=make_patient("p-2"))
    poisoned = Intake(_Poisoned(runtime.processor, poison.id, error), runtime.store, runtime.clock)
    queue = IntakeQueue(poisoned, inbound_archive(runtime.store))
    queue.take("feedback:twilio", [Input(None, poison)])
    queue.take("feedback:twilio", [Input(None, good)])

    assert queue.drain() == 2  # taken as one batch, then one by one to find the poison

    assert _queued(runtime) == [] and queue.drain() == 0
    assert _settled(runtime) == [("rejected", None), ("accepted", good.id)]
    [kept] = store_reads.rejected(runtime.store)
    assert (kept.source, kept.reason) == ("feedback:twilio", f"deferred: {type(error).__name__}")
    assert json.loads(kept.body)["id"] == poison.id


class _SettleFails:
    """The archive, whose settling fails once: a crash between the commit and the settle."""

    def __init__(self, inner: InboundArchive) -> None:
        self.inner = inner
        self.failed = False

    def keep(self, protocol: str, bodies: Sequence[bytes], now: datetime) -> list[int]:
        return self.inner.keep(protocol, bodies, now)

    def pending(self, protocol_prefix: str, limit: int) -> list[ArchivedMessage]:
        return self.inner.pending(protocol_prefix, limit)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("gone before the settle")
        self.inner.settle(settlements)


def test_a_queued_event_committed_but_not_settled_is_taken_again_as_a_duplicate(
    runtime: Runtime,
) -> None:
    event = make_event(start=START)
    queue = IntakeQueue(runtime.intake, _SettleFails(inbound_archive(runtime.store)))
    queue.take("feedback:twilio", [Input(None, event)])

    with pytest.raises(StoreError):
        queue.drain()
    scheduled = runtime.store.messages()
    assert scheduled and len(_queued(runtime)) == 1

    assert queue.drain() == 1
    assert _settled(runtime) == [("duplicate", event.id)]
    assert runtime.store.messages() == scheduled  # processed once
