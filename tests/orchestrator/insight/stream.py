"""A known event stream on a known flow, with its figures counted by hand (see each test).

Five patients on the test flow with a `referred` stage in front:
- p-1 books, completes the intake an hour later, attends (completed).
- p-2 books, replies to the confirmation, misses the visit (a no-show the flow does not follow).
- p-3 books, cancels (rebooking), books again, attends.
- p-4 books and opts out of everything the next day.

Nothing happens at the very instant a message falls due: the simulator lets the
event go first, the runtime the message, and the figures would differ.
- p-5 is referred, books 48 hours later.
"""

from __future__ import annotations

from typing import Any

from orchestrator.event import Event
from orchestrator.flows.model import Flow
from orchestrator.flows.schema import FlowFile
from tests.builders import at, flow_data, make_event, make_patient

__all__ = ["insight_flow", "insight_flow_data", "insight_stream"]


def insight_flow_data(**overrides: Any) -> dict[str, Any]:
    data = flow_data()
    data["id"] = "insight-flow"
    data["starts_on"] = [*data["starts_on"], "referral.received"]
    data["stages"] = [
        {
            "id": "referred",
            "name": "Referred",
            "category": "awareness",
            "enter_on": ["referral.received"],
            "success_metric": {"name": "referral_to_booking_time", "target": "under 3 days"},
            "notes": {
                "as_is": ["Referrals wait for a call back"],
                "to_be": [
                    {
                        "idea": "Text a booking link the same day",
                        "owner": "operations",
                        "who": "Scheduling team",
                        "target": "2026-06-30",
                    }
                ],
            },
        },
        *data["stages"],
    ]
    data["personas"] = [
        {
            "id": "caregiver_coordinator",
            "name": "Caregiver coordinating transport and forms",
            "when": {"patient.caregivers": [1, 2, 3]},
            "focus": ["booked"],
        },
        {"id": "self_managing", "name": "Patient managing alone", "when": {}},
    ]
    data.update(overrides)
    return data


def insight_flow(**overrides: Any) -> Flow:
    return FlowFile.model_validate(insight_flow_data(**overrides)).to_core()


def insight_stream() -> list[Event]:
    def patient(pid: str, caregivers: bool = False) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if caregivers:
            extra["caregivers"] = [
                {
                    "id": f"c-{pid}",
                    "relationship": "son",
                    "phone": "+15555550150",
                    "language": "en",
                    "receives": ["transport"],
                }
            ]
        return make_patient(pid, phone=f"+155555501{pid[-1]}0", **extra)

    start = at(days=5)
    events = [
        make_event(
            "appointment.booked",
            id="e1-book",
            patient=patient("p-1", True),
            appointment_id="a-1",
            start=start,
        ),
        make_event(
            "intake.completed",
            id="e1-intake",
            occurred_at=at(hours=1),
            patient=patient("p-1", True),
            appointment_id=None,
        ),
        make_event(
            "appointment.completed",
            id="e1-done",
            occurred_at=start,
            patient=patient("p-1", True),
            appointment_id="a-1",
        ),
        make_event(
            "appointment.booked",
            id="e2-book",
            patient=patient("p-2"),
            appointment_id="a-2",
            start=start,
        ),
        make_event(
            "message.replied",
            id="e2-reply",
            occurred_at=at(hours=2),
            patient=patient("p-2"),
            appointment_id=None,
            attributes={"body": "C"},
        ),
        make_event(
            "appointment.no_show",
            id="e2-miss",
            occurred_at=start + (at(hours=1) - at()),
            patient=patient("p-2"),
            appointment_id="a-2",
        ),
        make_event(
            "appointment.booked",
            id="e3-book",
            patient=patient("p-3"),
            appointment_id="a-3",
            start=start,
        ),
        make_event(
            "appointment.cancelled",
            occurred_at=at(hours=23),
            patient=patient("p-3"),
            appointment_id="a-3",
        ),
        make_event(
            "appointment.booked",
            id="e3-rebook",
            occurred_at=at(days=2),
            patient=patient("p-3"),
            appointment_id="a-3b",
            start=at(days=6),
        ),
        make_event(
            "appointment.completed",
            id="e3-done",
            occurred_at=at(days=6),
            patient=patient("p-3"),
            appointment_id="a-3b",
        ),
        make_event(
            "appointment.booked",
            id="e4-book",
            patient=patient("p-4"),
            appointment_id="a-4",
            start=start,
        ),
        make_event(
            "consent.opted_out",
            id="e4-out",
            occurred_at=at(hours=23),
            patient=patient("p-4"),
            appointment_id=None,
        ),
        make_event(
            "referral.received",
            id="e5-ref",
            patient=patient("p-5"),
            appointment_id=None,
            attributes={"service": "cardiology.consult"},
        ),
        make_event(
            "appointment.booked",
            id="e5-book",
            occurred_at=at(days=2),
            patient=patient("p-5"),
            appointment_id="a-5",
            start=at(days=9),
        ),
    ]
    return sorted(events, key=lambda e: e.occurred_at)
