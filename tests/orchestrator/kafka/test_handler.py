"""The batch handler on a real store: poison set aside, redelivery harmless, patients in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.kafka import BatchHandler, Record, topic_for
from orchestrator.kafka.handler import in_patient_order
from orchestrator.kafka.worker import build_handler
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests import store_reads
from tests.builders import at, make_event_data, make_patient
from tests.samples import ROOT, sample_events


@pytest.fixture
def service(store_url: str) -> Iterator[EmbeddedService]:
    settings = Settings(db=store_url, flows=ROOT / "flows", templates=ROOT / "templates")
    built = EmbeddedService.build(
        settings, clock=VirtualClock(parse_event(sample_events("knee-replacement")[0]).occurred_at)
    )
    yield built
    built.store.engine.dispose()


@pytest.fixture
def handler(service: EmbeddedService) -> BatchHandler:
    return build_handler(service)


def records(events: list[dict[str, Any]]) -> list[Record]:
    """The events as records on their topics, numbered like one partition's offsets."""
    return [
        Record(
            topic_for(e["type"]) or "patient.scheduling",
            0,
            offset,
            e["patient"]["id"].encode(),
            json.dumps(e).encode(),
        )
        for offset, e in enumerate(events)
    ]


def test_poison_becomes_dead_letters_and_rejected_input_and_blocks_nothing(
    handler: BatchHandler, service: EmbeddedService
) -> None:
    good = make_event_data(id="evt-good")
    batch = [
        Record("patient.scheduling", 2, 10, b"p-1", b"{not json"),
        Record("patient.scheduling", 2, 11, b"p-1", b'["an", "array"]'),
        Record("patient.intake", 2, 12, b"p-1", json.dumps({**good, "type": "x.y"}).encode()),
        Record("patient.scheduling", 2, 13, None, None),
        Record("patient.scheduling", 2, 14, b"p-1", json.dumps(good).encode()),
    ]

    outcome = handler.handle(batch)

    assert [(r.id, r.status) for r in outcome.results] == [("evt-good", "accepted")]
    assert [(d.record.offset, d.record.topic) for d in outcome.dead] == [
        (10, "patient.scheduling"),
        (11, "patient.scheduling"),
        (12, "patient.intake"),
        (13, "patient.scheduling"),
    ]
    reasons = [d.reason for d in outcome.dead]
    assert "not JSON" in reasons[0]
    assert "expected a JSON object" in reasons[1]
    assert "unknown event type" in reasons[2]
    kept = store_reads.rejected(service.store)
    assert sorted(r.reason for r in kept) == sorted(reasons)
    assert {r.source for r in kept} == {"kafka"}


def test_redelivered_batch_changes_nothing(handler: BatchHandler, service: EmbeddedService) -> None:
    batch = records(sample_events("knee-replacement"))
    first = handler.handle(batch)
    messages = service.store.messages()
    audit = service.store.audit()

    again = handler.handle(batch)

    assert {r.status for r in first.results} <= {"accepted", "duplicate"}
    assert {r.status for r in again.results} == {"duplicate"}
    assert service.store.messages() == messages
    assert service.store.audit() == audit


def test_patient_events_merge_across_topics_by_time_keeping_each_topic_order() -> None:
    booked = make_event_data("appointment.booked", id="b", occurred_at=at(hours=1))
    intake = make_event_data("intake.sent", id="i", occurred_at=at(hours=2))
    # Later in time than `late` but first on its topic: a topic's order is the producer's.
    early = make_event_data("appointment.rescheduled", id="e1", occurred_at=at(hours=4))
    late = make_event_data("appointment.checked_in", id="e2", occurred_at=at(hours=3))
    other = make_event_data(id="o", patient=make_patient("p-2"), occurred_at=at(hours=1))
    # As a worker may read them: the intake topic first.
    read = records([intake, booked, early, late, other])
    events = [(parse_event(json.loads(r.value or b"")), r) for r in read]

    ordered = [event.id for event, _ in in_patient_order(events)]

    assert ordered == ["b", "i", "e1", "e2", "o"]
