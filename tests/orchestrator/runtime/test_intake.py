"""The intake every transport hands its input to, on every store: one result per input, in
order, and each refused input kept exactly once under the transport's source."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from orchestrator.errors import StoreError
from orchestrator.event import Event
from orchestrator.ports import EventResult, ImportHold, Input
from orchestrator.runtime.intake import Intake, IntakeQueue, parse_document
from tests import store_reads
from tests.builders import at, make_event, make_event_data, make_flow, make_patient
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime

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


def test_a_queued_input_is_taken_only_when_the_queue_is_drained(runtime: Runtime) -> None:
    queue = IntakeQueue(runtime.intake)

    assert queue.take("feedback:twilio", [Input(None, make_event(start=START))]) == []
    assert runtime.store.messages() == [] and len(queue) == 1

    assert queue.drain() == 1
    assert runtime.store.messages() and len(queue) == 0
    assert queue.drain() == 0


def test_a_queued_batch_the_store_fails_on_stays_queued(runtime: Runtime) -> None:
    queue = IntakeQueue(Intake(_Down(), runtime.store, runtime.clock))
    queue.take("feedback:twilio", [Input(None, make_event(start=START))])

    with pytest.raises(StoreError):
        queue.drain()

    assert len(queue) == 1
