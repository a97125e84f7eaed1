"""Event history: processed events keep their canonical body and read back in fold order.

Store behaviour, so it runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from orchestrator.errors import InputError
from orchestrator.event import Event, EventType
from orchestrator.event_schema import dump_event, parse_event
from orchestrator.limits import storable_text
from orchestrator.memory_store import MemoryStore
from orchestrator.store import SqlStore, codec
from orchestrator.store.history import read_history
from orchestrator.store.tables import ProcessedEventRow
from tests.builders import T0, at, make_event, make_event_data, make_patient
from tests.conftest import EVERY_BACKEND

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

Store = SqlStore | MemoryStore


def processed(store: Store, events: Sequence[Event]) -> None:
    with store.unit(at(days=60)) as unit:
        for event in events:
            unit.mark_processed(event)


def rich_event() -> Event:
    """Every part of the canonical event, with text that is awkward but accepted."""
    patient = make_patient(
        "p-rich",
        language="es",
        caregivers=[
            {
                "id": "cg-1",
                "relationship": "hija",
                "phone": "+15555550102",
                "email": "cg@example.org",
                "language": "es",
                "receives": ["transport"],
            }
        ],
    )
    data = make_event_data(
        "patient.discharged",
        id="evt-rich",
        occurred_at=at(hours=3).astimezone(),
        patient=patient,
        encounter={
            "id": "enc-1",
            "admitted_at": at(days=-2),
            "discharged_at": at(hours=3),
            "disposition": "home",
            "service": "orthopedics",
        },
        attributes={
            "note": "Peña — señal ✓ 😀 \u2028 \u0001 \ufffd",
            "nested": {"list": [1, 2.5, True, None, {"k": "v"}], "empty": {}},
            "big": 2**62,
        },
    )
    data["unknown_field"] = "kept as an attribute"
    return parse_event(data)


def test_a_processed_event_reads_back_exactly(store: Store) -> None:
    event = rich_event()
    assert parse_event(dump_event(event)) == event
    processed(store, [event])

    assert list(store.history(at(days=-1))) == [event]


def test_history_is_in_fold_order_whatever_the_processing_order(store: Store) -> None:
    # One instant: the booking folds before its cancellation, whatever the ids say.
    booked = make_event("appointment.booked", id="z-booked", occurred_at=at(), start=at(days=8))
    cancelled = make_event("appointment.cancelled", id="a-cancelled", occurred_at=at())
    later = [make_event("intake.sent", occurred_at=at(hours=h)) for h in range(1, 8)]
    earlier = make_event("referral.received", occurred_at=at(hours=-5))
    events = [booked, cancelled, *later, earlier]
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    for chunk in (shuffled[:4], shuffled[4:]):
        processed(store, chunk)

    assert list(store.history(at(days=-1))) == sorted(events, key=Event.sort_key)
    assert [e.id for e in store.history(at(days=-1))][:3] == [earlier.id, booked.id, cancelled.id]


def test_history_keeps_to_its_window_and_types(store: Store) -> None:
    events = [
        make_event("appointment.booked", occurred_at=at(days=d), start=at(days=d + 8))
        for d in range(5)
    ] + [make_event("intake.sent", occurred_at=at(days=d, hours=1)) for d in range(5)]
    processed(store, events)

    window = list(store.history(at(days=1), at(days=3)))
    assert {e.occurred_at for e in window} == {
        at(days=1),
        at(days=1, hours=1),
        at(days=2),
        at(days=2, hours=1),
    }  # since is in, until is out
    assert len(list(store.history(at(days=3)))) == 4
    booked = list(store.history(at(), None, frozenset({EventType.APPOINTMENT_BOOKED})))
    assert [e.type for e in booked] == [EventType.APPOINTMENT_BOOKED] * 5
    assert list(store.history(at(days=10))) == []


def test_events_at_other_offsets_are_placed_by_instant(store: Store) -> None:
    from zoneinfo import ZoneInfo

    tokyo = make_event("intake.sent", occurred_at=at(hours=2).astimezone(ZoneInfo("Asia/Tokyo")))
    utc = make_event("intake.sent", occurred_at=at(hours=1))
    processed(store, [tokyo, utc])

    assert list(store.history(at(hours=1, minutes=30))) == [tokyo]
    assert list(store.history(at())) == [utc, tokyo]


@pytest.mark.parametrize("text", ["nul \x00 here", "lone \ud800 surrogate", "\udfff"])
def test_text_the_store_cannot_keep_is_refused_before_it(text: str) -> None:
    # What the event schema accepts is what the store keeps: a NUL or a lone
    # surrogate in an attribute is refused at the door, as today.
    with pytest.raises(InputError):
        parse_event(make_event_data("intake.sent", attributes={"note": text}))
    with pytest.raises(InputError):
        parse_event(make_event_data("intake.sent", attributes={text: "value"}))


@pytest.mark.parametrize("text", ["nul \x00", "lone \ud800", "ok ñ 😀"])
def test_a_body_is_storable_text_whatever_it_holds(text: str) -> None:
    # Escaped JSON: even a value the limits would refuse could not break the column.
    event = make_event("intake.sent")
    hostile = Event(**{**_fields(event), "attributes": {"note": text}})
    body = codec.dumps_event(hostile)
    assert body.isascii()
    assert storable_text(body) == body
    assert json.loads(body)["attributes"]["note"] == text


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


# -- SQL: reading in chunks, and rows from before bodies were kept ----------------


@pytest.mark.backends("sqlite", "postgresql")
def test_chunks_continue_across_an_instant_shared_by_many_events(store: SqlStore) -> None:
    events = [make_event("intake.sent", id=f"e-{i:02}", occurred_at=at()) for i in range(5)]
    events += [
        make_event("appointment.booked", id=f"b-{i:02}", occurred_at=at(), start=at(days=8))
        for i in range(3)
    ]
    events += [make_event("intake.sent", occurred_at=at(minutes=m)) for m in range(1, 6)]
    processed(store, events)

    read = list(read_history(store.transactions.read, at(), None, None, chunk=2))

    assert read == sorted(events, key=Event.sort_key)


@pytest.mark.backends("sqlite", "postgresql")
def test_rows_without_a_body_are_not_replayed(store: SqlStore) -> None:
    kept = make_event("intake.sent", occurred_at=at(hours=1))
    processed(store, [kept])
    with store.engine.begin() as c:
        c.execute(
            insert(ProcessedEventRow),
            {
                "event_id": "before-0009",
                "type": "intake.sent",
                "source": "test",
                "patient_id": "p-1",
                "occurred_at": at(),
                "received_at": at(),
                "body": None,
            },
        )

    assert list(store.history(T0 - timedelta(days=1))) == [kept]
