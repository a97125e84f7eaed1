"""A long history of one patient: a dialysis-like stream of sessions on the test flow."""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.event import Event
from tests.builders import at, make_event, make_patient


def sessions(count: int, patient_id: str = "p-1", first: datetime | None = None) -> list[Event]:
    """`count` sessions every two or three days, in the order they occurred.

    Each is booked (often before the previous one is over, so episodes
    overlap), checked in and completed: one episode each. Every fifth is
    cancelled instead and booked again (a second episode for it).
    """
    events: list[Event] = []
    start = (first or at()) + timedelta(days=2)
    booked_at = first or at()
    patient = make_patient(patient_id)
    for n in range(count):
        appointment = f"a-{n}"
        kw = {"appointment_id": appointment, "patient": patient}
        events.append(
            make_event(
                "appointment.booked", id=f"book-{n}", occurred_at=booked_at, start=start, **kw
            )
        )
        if n % 5 == 4:
            events.append(
                make_event(
                    "appointment.cancelled",
                    id=f"cancel-{n}",
                    occurred_at=booked_at + timedelta(hours=2),
                    **kw,
                )
            )
            events.append(
                make_event(
                    "appointment.booked",
                    id=f"rebook-{n}",
                    occurred_at=booked_at + timedelta(hours=3),
                    start=start,
                    **kw,
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
