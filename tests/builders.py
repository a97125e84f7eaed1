"""Builders for test inputs: events and flows with sensible defaults.

Only reserved numbers (+1 555 01xx) and example.org addresses appear here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows.model import Flow
from orchestrator.flows.schema import FlowFile
from orchestrator.templates import TemplateSet

_ids = itertools.count(1)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """An instant relative to T0 (Monday 2026-03-02 14:00 UTC, 08:00 in Chicago)."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def make_patient(
    patient_id: str = "p-1",
    *,
    language: str | None = "en",
    timezone: str | None = "America/Chicago",
    phone: str | None = "+15555550101",
    email: str | None = "patient@example.org",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": patient_id,
        "phone": phone,
        "email": email,
        "language": language,
        "timezone": timezone,
        **extra,
    }


def make_event_data(
    type: str = "appointment.booked",
    *,
    id: str | None = None,
    occurred_at: datetime | None = None,
    patient: dict[str, Any] | None = None,
    appointment_id: str | None = "a-1",
    start: datetime | None = None,
    service: str = "cardiology.consult",
    encounter: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-shaped canonical event."""
    data: dict[str, Any] = {
        "id": id or f"evt-{next(_ids)}",
        "type": type,
        "occurred_at": (occurred_at or T0).isoformat(),
        "source": "test",
        "patient": patient or make_patient(),
        "attributes": attributes or {},
    }
    if appointment_id is not None and (type.startswith(("appointment.", "intake.")) or start):
        data["appointment"] = {
            "id": appointment_id,
            "start": start.isoformat() if start else None,
            "service": service,
            "location": "Main Campus",
        }
    if encounter is not None:
        data["encounter"] = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in encounter.items()
        }
    return data


def make_event(type: str = "appointment.booked", **kwargs: Any) -> Event:
    """A core `Event`; see `make_event_data` for the arguments."""
    return parse_event(make_event_data(type, **kwargs))


def make_flow(**overrides: Any) -> Flow:
    """A small valid flow: booked (confirmation + reminders), visited (follow-up), rebooking."""
    return FlowFile.model_validate(flow_data(**overrides)).to_core()


def flow_data(**overrides: Any) -> dict[str, Any]:
    """The flow-file data behind `make_flow`, for tests that write YAML."""
    data: dict[str, Any] = {
        "id": "test-flow",
        "version": 1,
        "title": "Test flow",
        "timezone": "America/Chicago",
        "languages": ["en", "es"],
        "starts_on": [{"event": "appointment.booked", "service": "cardiology.*"}],
        "stages": [
            {
                "id": "booked",
                "name": "Booked",
                "category": "access",
                "enter_on": [
                    "appointment.booked",
                    {"event": "appointment.booked", "from": ["rebooking"]},
                ],
                "messages": [
                    {
                        "id": "confirmation",
                        "template": "confirmation",
                        "channels": ["sms", "email"],
                        "at": "stage.entered",
                        "expires": "appointment.start",
                    },
                    {
                        "id": "intake_nudge",
                        "template": "intake_nudge",
                        "channels": ["sms"],
                        "at": "stage.entered + 1d",
                        "unless": ["intake.completed"],
                    },
                    {
                        "id": "reminder_72h",
                        "template": "reminder",
                        "channels": ["sms", "email"],
                        "at": "appointment.start - 72h",
                        "cancel_on": ["appointment.checked_in"],
                    },
                    {
                        "id": "reminder_24h",
                        "template": "reminder",
                        "channels": ["sms", "email"],
                        "at": "appointment.start - 24h",
                        "topic": "transport",
                    },
                ],
            },
            {
                "id": "visited",
                "name": "Visited",
                "category": "follow_up",
                "enter_on": ["appointment.completed"],
                "final": True,
                "messages": [
                    {
                        "id": "survey",
                        "template": "survey",
                        "channels": ["email"],
                        "at": "stage.entered + 1d at 10:00",
                    }
                ],
            },
            {
                "id": "rebooking",
                "name": "Rebooking",
                "category": "access",
                "enter_on": [{"event": "appointment.cancelled", "from": ["booked"]}],
                "messages": [
                    {
                        "id": "rebooking_nudge",
                        "template": "rebooking",
                        "channels": ["sms"],
                        "at": "stage.entered + 1d at 10:00",
                        "cancel_on": ["appointment.booked"],
                    }
                ],
            },
        ],
        # Opting out of one channel leaves the others; opting out of all ends the journey.
        "exits": [
            {
                "event": "consent.opted_out",
                "outcome": "opted_out",
                "when": {"attributes.channel": [None, "all"]},
            }
        ],
    }
    data.update(overrides)
    return data


def audit_row_data(key: str, status: str, **columns: Any) -> dict[str, Any]:
    """An `audit_log` row with every column the store writes (`rows.audit_row`'s),
    of flow `f`, episode `ep-1` and message `m` unless `columns` says otherwise."""
    return {
        "at": T0,
        "event_id": "e-1",
        "patient_id": "p-1",
        "flow_id": "f",
        "flow_version": 1,
        "episode_id": "ep-1",
        "stage_id": "booked",
        "message_id": "m",
        "key": key,
        "recipient": "p-1",
        "channel": None,
        "language": None,
        "template": "t",
        "due_at": T0,
        "status": status,
        "reason": None,
    } | columns


def write_templates(root: Path, names: tuple[str, ...]) -> Path:
    """Short SMS and email templates for `names`, in English and Spanish."""
    for language in ("en", "es"):
        for name in names:
            sms = root / "sms" / language / f"{name}.j2"
            sms.parent.mkdir(parents=True, exist_ok=True)
            sms.write_text(f"{name}: {{{{ appointment.when }}}} {{{{ links.reschedule }}}}\n")
            email = root / "email" / language / f"{name}.j2"
            email.parent.mkdir(parents=True, exist_ok=True)
            email.write_text(
                f"{{% block subject %}}{name}{{% endblock %}}\n"
                "{% block text %}{{ appointment.date }} {{ appointment.provider }}{% endblock %}\n"
                "{% block html %}<p>{{ appointment.date }}</p>{% endblock %}\n"
            )
    return root


def templates_for(flows: Iterable[Flow], root: Path) -> TemplateSet:
    """Short templates for every message of `flows`, written under `root`."""
    names = tuple({m.template for flow in flows for stage in flow.stages for m in stage.messages})
    return TemplateSet(write_templates(root, names))
