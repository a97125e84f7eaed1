"""The event processor: batches of events through the engine into the store."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.event import Channel
from orchestrator.policies import ConsentRecord
from tests import store_reads
from tests.builders import at, make_event, make_flow, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.history import sessions
from tests.orchestrator.runtime.conftest import FLOW, BuildRuntime, Runtime

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

START = at(days=8)


def state(runtime: Runtime, patient_id: str = "p-1") -> dict[str, Any]:
    """Everything the processor writes about a patient."""
    return {
        "patient": store_reads.patient(runtime.store, patient_id),
        "journeys": store_reads.patient_journeys(runtime.store, patient_id),
        "episodes": runtime.store.episodes(patient_id),
        "messages": runtime.store.messages(),
        "audit": runtime.store.audit(),
        "consent": store_reads.consent(runtime.store, patient_id, "patient"),
    }


def test_booking_schedules_the_flow_messages_with_an_audit_row_each(runtime: Runtime) -> None:
    booked = make_event(start=START)

    (result,) = runtime.process(booked)

    assert (result.id, result.status) == (booked.id, "accepted")
    messages = runtime.store.messages()
    assert sorted(m.message for m in messages) == [
        "confirmation",
        "intake_nudge",
        "reminder_24h",
        "reminder_72h",
    ]
    assert {(m.status, m.flow_version) for m in messages} == {("scheduled", 1)}
    audit = runtime.store.audit()
    assert sorted(a.key for a in audit) == sorted(m.key for m in messages)
    assert {(a.status, a.event_id) for a in audit} == {("scheduled", booked.id)}
    (episode,) = runtime.store.episodes("p-1")
    assert (episode.flow, episode.stage, episode.status) == (
        "test-flow",
        "booked",
        "active",
    )


def test_same_event_id_twice_changes_nothing(runtime: Runtime) -> None:
    booked = make_event(start=START)
    runtime.process(booked)
    before = state(runtime)

    runtime.clock.move_to(at(hours=1))
    (again,) = runtime.process(booked)

    assert again.status == "duplicate"
    assert state(runtime) == before


def test_same_event_id_twice_in_one_batch_is_applied_once(runtime: Runtime) -> None:
    booked = make_event(start=START)

    results = runtime.process(booked, booked)

    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert len(runtime.store.messages()) == 4
    assert len(runtime.store.audit()) == 4


def test_cancellation_cancels_the_pending_messages_in_the_store(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))

    runtime.clock.move_to(at(hours=1))
    runtime.process(make_event("appointment.cancelled", occurred_at=at(hours=1)))

    statuses = {m.message: (m.status, m.reason) for m in runtime.store.messages()}
    assert statuses == {
        "confirmation": ("cancelled", "appointment_cancelled"),
        "intake_nudge": ("cancelled", "appointment_cancelled"),
        "reminder_72h": ("cancelled", "appointment_cancelled"),
        "reminder_24h": ("cancelled", "appointment_cancelled"),
        "rebooking_nudge": ("scheduled", None),
    }
    cancelled = [a for a in runtime.store.audit() if a.status == "cancelled"]
    assert len(cancelled) == 4


def test_newest_patient_snapshot_wins_whatever_the_arrival_order(runtime: Runtime) -> None:
    newer = make_patient(phone="+15555550102")
    older = make_patient(phone="+15555550103")
    runtime.process(make_event(start=START, occurred_at=at(hours=2), patient=newer))

    runtime.process(
        make_event("appointment.rescheduled", start=START, occurred_at=at(hours=1), patient=older)
    )

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None and patient.phone == "+15555550102"


def test_newest_patient_snapshot_wins_within_one_batch(runtime: Runtime) -> None:
    runtime.process(
        make_event(
            start=START, occurred_at=at(hours=2), patient=make_patient(email="new@example.org")
        ),
        make_event(
            "appointment.rescheduled",
            start=START,
            occurred_at=at(hours=1),
            patient=make_patient(email="old@example.org"),
        ),
    )

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None and patient.email == "new@example.org"


def test_opt_out_of_one_channel_is_recorded_for_that_channel(runtime: Runtime) -> None:
    runtime.process(
        make_event(
            "consent.opted_out",
            occurred_at=at(hours=1),
            appointment_id=None,
            attributes={"channel": "sms"},
        )
    )

    assert store_reads.consent(runtime.store, "p-1", "patient") == {
        Channel.SMS: ConsentRecord(Channel.SMS, False, at(hours=1), "test")
    }


def test_opt_out_without_a_channel_covers_every_channel(runtime: Runtime) -> None:
    runtime.process(make_event("consent.opted_out", occurred_at=at(hours=1), appointment_id=None))

    consent = store_reads.consent(runtime.store, "p-1", "patient")
    assert set(consent) == set(Channel)
    assert not any(record.granted for record in consent.values())


def test_later_consent_decision_wins_whatever_the_arrival_order(runtime: Runtime) -> None:
    sms = {"channel": "sms"}
    runtime.process(
        make_event(
            "consent.opted_out", occurred_at=at(hours=2), appointment_id=None, attributes=sms
        )
    )
    runtime.process(
        make_event("consent.opted_in", occurred_at=at(hours=1), appointment_id=None, attributes=sms)
    )
    assert store_reads.consent(runtime.store, "p-1", "patient")[Channel.SMS].granted is False

    runtime.process(
        make_event("consent.opted_in", occurred_at=at(hours=3), appointment_id=None, attributes=sms)
    )
    assert store_reads.consent(runtime.store, "p-1", "patient")[Channel.SMS] == ConsentRecord(
        Channel.SMS, True, at(hours=3), "test"
    )


def test_caregiver_opt_out_is_recorded_for_the_caregiver_only(runtime: Runtime) -> None:
    runtime.process(
        make_event(
            "consent.opted_out",
            occurred_at=at(hours=1),
            appointment_id=None,
            attributes={"channel": "sms", "caregiver_id": "c-1"},
        )
    )

    assert store_reads.consent(runtime.store, "p-1", "patient") == {}
    assert set(store_reads.consent(runtime.store, "p-1", "caregiver:c-1")) == {Channel.SMS}


def test_event_the_engine_fails_on_is_kept_and_the_rest_of_the_batch_goes_on(
    build_runtime: BuildRuntime,
) -> None:
    # p-1's journey is on version 1; a registry that lacks version 1 cannot advance it.
    first = build_runtime()
    first.process(make_event(start=START))
    v2 = make_flow(version=2)
    second = build_runtime({v2.id: v2})
    failing = make_event("appointment.checked_in", start=START, occurred_at=at(hours=1))
    other = make_event(start=START, patient=make_patient("p-2", phone="+15555550104"))

    results = second.process(failing, other)

    assert [(r.id, r.status) for r in results] == [(failing.id, "rejected"), (other.id, "accepted")]
    assert results[0].errors == ("engine failed: KeyError",)
    (kept,) = store_reads.rejected(second.store)
    assert kept.reason == f"event {failing.id}: engine failed: KeyError"
    assert failing.id.encode() in kept.body
    assert {m.flow_version for m in second.store.messages(patient_id="p-2")} == {2}
    # Not marked processed: once the flow is back, the event can be replayed.
    (replayed,) = first.process(failing)
    assert replayed.status == "accepted"


# -- patient data: partial updates ----------------------------------------------------

ID_ONLY = {"id": "p-1"}


def test_a_reschedule_naming_the_patient_by_id_alone_keeps_what_the_store_knows(
    runtime: Runtime,
) -> None:
    runtime.process(make_event(start=START, patient=make_patient(language="es")))
    runtime.clock.move_to(at(hours=1))

    runtime.process(
        make_event(
            "appointment.rescheduled", start=at(days=9), occurred_at=at(hours=1), patient=ID_ONLY
        )
    )
    runtime.run_until_idle()

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None
    assert (patient.phone, patient.email, patient.language, patient.timezone) == (
        "+15555550101",
        "patient@example.org",
        "es",
        "America/Chicago",
    )
    audit = runtime.store.audit()
    assert [a.reason for a in audit if a.status == "suppressed"] == []
    reminders = [a for a in audit if a.status == "sent" and a.message.startswith("reminder")]
    assert reminders and {a.language for a in reminders} == {"es"}


def test_a_booking_naming_the_patient_by_id_alone_still_gives_the_caregivers_their_copies(
    runtime: Runtime,
) -> None:
    caregiver = {"id": "c-1", "phone": "+15555550102", "receives": ["transport"]}
    runtime.process(make_event(start=START, patient=make_patient(caregivers=[caregiver])))
    runtime.clock.move_to(at(hours=1))

    # A second appointment, from a source that references the patient by id.
    runtime.process(
        make_event(appointment_id="a-2", start=at(days=9), occurred_at=at(hours=1), patient=ID_ONLY)
    )

    copies = {
        m.due_at
        for m in runtime.store.messages()
        if m.recipient == "caregiver:c-1" and m.status == "scheduled"
    }
    assert copies == {START - timedelta(hours=24), at(days=9) - timedelta(hours=24)}


def test_an_explicit_null_in_the_patient_block_clears_that_field_only(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))

    runtime.process(
        make_event(
            "appointment.rescheduled",
            start=START,
            occurred_at=at(hours=1),
            patient={"id": "p-1", "email": None},
        )
    )

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None and (patient.email, patient.phone) == (None, "+15555550101")


def test_an_older_partial_update_arriving_later_fills_gaps_but_overwrites_nothing_newer(
    runtime: Runtime,
) -> None:
    runtime.process(
        make_event(start=START, occurred_at=at(hours=2), patient={"id": "p-1", "language": "vi"})
    )

    runtime.process(
        make_event(
            "appointment.rescheduled",
            start=START,
            occurred_at=at(hours=1),
            patient=make_patient(language="es"),
        )
    )

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None and (patient.language, patient.phone) == ("vi", "+15555550101")


_FIELD_VALUES: dict[str, list[Any]] = {
    "phone": ["+15555550101", "+15555550102"],
    "email": ["a@example.org", "b@example.org"],
    "language": ["en", "es"],
    "timezone": ["America/Chicago", "America/Denver"],
    "preferred_channel": ["sms", "email"],
    "caregivers": [[{"id": "c-1", "receives": ["transport"]}]],
}
_patient_ids = itertools.count(1)


@st.composite
def _partial_blocks(draw: st.DrawFn) -> list[tuple[int, dict[str, Any]]]:
    """Patient blocks (without the id) and the hour each occurred: absent, null or a value."""
    blocks = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        block: dict[str, Any] = {}
        for name, values in _FIELD_VALUES.items():
            kind = draw(st.sampled_from(["absent", "null", "value"]))
            if kind != "absent":
                block[name] = None if kind == "null" else draw(st.sampled_from(values))
        blocks.append((draw(st.integers(0, 2)), block))
    return blocks


def test_any_arrival_order_of_partial_updates_stores_the_same_patient(runtime: Runtime) -> None:
    # The runtime is built once for all examples: each example takes fresh patient ids.
    @settings(max_examples=15, deadline=None)
    @given(data=st.data(), blocks=_partial_blocks())
    def check(data: st.DataObject, blocks: list[tuple[int, dict[str, Any]]]) -> None:
        order = data.draw(st.permutations(range(len(blocks))))
        stored = []
        # Two patients: one gets the updates as listed, the other in another order.
        for arrival in (range(len(blocks)), order):
            patient_id = f"p-prop-{next(_patient_ids)}"
            events = [
                make_event(
                    "patient.updated",
                    id=f"{patient_id}-evt-{i}",
                    occurred_at=at(hours=hour),
                    patient={"id": patient_id, **block},
                )
                for i, (hour, block) in enumerate(blocks)
            ]
            for i in arrival:
                runtime.process(events[i])  # one batch each: arrival order is batch order
            patient = store_reads.patient(runtime.store, patient_id)
            assert patient is not None
            stored.append(dataclasses.replace(patient, id="p"))
        assert stored[0] == stored[1]

    check()


def test_a_long_history_settles_into_the_store_and_reads_back_whole(runtime: Runtime) -> None:
    stream = sessions(60)
    for event in stream:
        runtime.clock.move_to(max(runtime.clock.now(), event.occurred_at))
        assert runtime.process(event)[0].status == "accepted"

    live = store_reads.journey(runtime.store, "p-1", FLOW.id, 1)
    assert live is not None and len(live.episodes) < 30 and len(live.events) < 80
    ((version, whole),) = store_reads.patient_journeys(runtime.store, "p-1")
    assert version == 1 and len(whole.episodes) == 60
    assert [e.started_at for e in whole.episodes] == sorted(e.started_at for e in whole.episodes)
    ((_, same),) = runtime.store.flow_journeys(FLOW.id)
    assert same == whole
    rows = runtime.store.episodes("p-1")
    assert len(rows) == 60 and all("settled" not in asdict(row) for row in rows)
    assert {row.status for row in rows} == {"completed"}


def test_an_event_from_before_the_horizon_is_taken_with_a_note(runtime: Runtime) -> None:
    stream = sessions(30)
    for event in stream:
        runtime.clock.move_to(max(runtime.clock.now(), event.occurred_at))
        runtime.process(event)
    live = store_reads.journey(runtime.store, "p-1", FLOW.id, 1)
    assert live is not None and live.horizon is not None

    late = make_event(
        "intake.completed", appointment_id="a-0", occurred_at=live.horizon - timedelta(days=1)
    )
    on_time = make_event("intake.completed", appointment_id="a-29", occurred_at=runtime.clock.now())
    first, second = runtime.process(late, on_time)

    assert first.status == "accepted" and "horizon" in first.notes[0]
    assert first.as_json()["notes"] == list(first.notes)
    assert second.notes == ()
    assert "notes" not in second.as_json()


def test_an_old_history_out_of_order_in_one_batch_folds_in_its_place(runtime: Runtime) -> None:
    # An import's lines from before the horizon, the reschedule listed first.
    now = runtime.clock.now()
    book = make_event(start=now + timedelta(days=10), occurred_at=now - timedelta(days=40))
    moved = make_event(
        "appointment.rescheduled",
        start=now + timedelta(days=12),
        occurred_at=now - timedelta(days=35),
    )

    results = runtime.process(moved, book)

    assert [r.id for r in results] == [moved.id, book.id]
    reminders = [
        m.due_at
        for m in runtime.store.messages(patient_id="p-1")
        if m.message == "reminder_24h" and m.status == "scheduled"
    ]
    assert reminders == [now + timedelta(days=11)]
