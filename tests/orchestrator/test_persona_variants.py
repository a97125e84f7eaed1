"""Personas: an episode's persona comes from its opening event; a message's variant for it
changes the template, channels or timing, also when the appointment moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.actions import ScheduleMessage
from orchestrator.engine import advance
from orchestrator.errors import FlowError
from orchestrator.flows import load_flow
from orchestrator.flows.schema import FlowFile
from orchestrator.journey import Journey, ScheduledMessage
from tests.builders import at, flow_data, make_event, make_patient

CAREGIVER = {
    "id": "c-1",
    "relationship": "daughter",
    "phone": "+15555550102",
    "language": "en",
    "receives": ["transport"],
}


def variant_flow_data() -> dict[str, Any]:
    data = flow_data()
    data["personas"] = [
        {
            "id": "caregiver_coordinator",
            "name": "Caregiver coordinating transport and forms",
            "when": {"patient.caregivers": [1, 2, 3]},
            "focus": ["booked"],
        },
        {
            "id": "urgent_worker",
            "name": "Working adult, urgent",
            "when": {"attributes.urgency": "urgent"},
        },
    ]
    reminder = next(m for m in data["stages"][0]["messages"] if m["id"] == "reminder_24h")
    reminder["variants"] = [
        {
            "persona": "caregiver_coordinator",
            "template": "reminder_caregiver",
            "channels": ["email"],
            "at": "appointment.start - 48h",
        }
    ]
    return data


FLOW = FlowFile.model_validate(variant_flow_data()).to_core()


def scheduled(events: list[Any]) -> list[ScheduledMessage]:
    journey = Journey.start("p-1", FLOW.id)
    found: list[ScheduledMessage] = []
    for event in events:
        decision = advance(journey, event, FLOW, event.occurred_at)
        journey = decision.journey
        found += [a.message for a in decision.actions if isinstance(a, ScheduleMessage)]
    return found


def reminders(messages: list[ScheduledMessage]) -> list[ScheduledMessage]:
    return [m for m in messages if m.message_id == "reminder_24h"]


def test_an_episode_opened_for_a_caregiver_persona_gets_the_variant() -> None:
    patient = make_patient(caregivers=[CAREGIVER])
    booked = make_event("appointment.booked", patient=patient, start=at(days=5))

    found = reminders(scheduled([booked]))

    assert {(str(m.recipient), m.template, m.channels) for m in found} == {
        ("patient", "reminder_caregiver", ("email",)),
        ("caregiver:c-1", "reminder_caregiver", ("email",)),
    }
    assert {m.due_at for m in found} == {at(days=3)}


def test_other_patients_get_the_message_as_written() -> None:
    booked = make_event("appointment.booked", start=at(days=5))

    (found,) = reminders(scheduled([booked]))

    assert (found.template, found.channels, found.due_at) == (
        "reminder",
        ("sms", "email"),
        at(days=4),
    )


def test_a_reschedule_moves_the_variant_by_its_own_timing() -> None:
    patient = make_patient(caregivers=[CAREGIVER])
    booked = make_event("appointment.booked", patient=patient, start=at(days=5))
    moved = make_event(
        "appointment.rescheduled", occurred_at=at(hours=1), patient=patient, start=at(days=8)
    )

    found = [m for m in reminders(scheduled([booked, moved])) if str(m.recipient) == "patient"]

    assert [m.due_at for m in found] == [at(days=3), at(days=6)]
    assert all(m.template == "reminder_caregiver" for m in found)


def test_the_persona_is_the_first_whose_conditions_the_opening_event_meets() -> None:
    urgent = make_event("appointment.booked", attributes={"urgency": "urgent"})
    both = make_event(
        "appointment.booked",
        attributes={"urgency": "urgent"},
        patient=make_patient(caregivers=[CAREGIVER]),
    )

    assert FLOW.persona_of(urgent) == "urgent_worker"
    assert FLOW.persona_of(both) == "caregiver_coordinator"
    assert FLOW.persona_of(make_event("appointment.booked")) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["personas"].append(dict(d["personas"][0])), "is already defined"),
        (lambda d: d["personas"][0].update(focus=["nowhere"]), "unknown stage 'nowhere'"),
        (
            lambda d: d["stages"][0]["messages"][3]["variants"][0].update(persona="nobody"),
            "unknown persona 'nobody'",
        ),
    ],
)
def test_validation_names_bad_persona_references(tmp_path: Path, change: Any, message: str) -> None:
    data = variant_flow_data()
    change(data)
    path = tmp_path / "test-flow.yaml"
    path.write_text(yaml.safe_dump(data))

    with pytest.raises(FlowError) as caught:
        load_flow(path)

    assert any(message in str(p) for p in caught.value.problems), caught.value.problems
