"""A long history of one patient: a dialysis-like stream of sessions on the test flow."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.event import Event
from tests.builders import at, make_event, make_patient


def sessions(count: int, patient_id: str = "p-1") -> list[Event]:
    """`count` sessions, each booked (often before the previous one is over), checked
    in and completed, every two or three days; one episode each, in occurrence order."""
    events: list[Event] = []
    start = at(days=2)
    booked_at = at()
    for n in range(count):
        appointment = f"a-{n}"
        kw = {"appointment_id": appointment, "patient": make_patient(patient_id)}
        events.append(
            make_event(
                "appointment.booked", id=f"book-{n}", occurred_at=booked_at, start=start, **kw
            )
        )
        events.append(
            make_event(
                "appointment.checked_in",
                id=f"in-{n}",
                occurred_at=start - timedelta(minutes=10),
                **kw,
            )
        )
        events.append(
            make_event(
                "appointment.completed",
                id=f"done-{n}",
                occurred_at=start + timedelta(hours=4),
                **kw,
            )
        )
        booked_at = start + timedelta(hours=1)
        start += timedelta(days=2 if n % 3 else 3)
    return sorted(events, key=Event.sort_key)
