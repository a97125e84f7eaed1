"""The shipped sample event streams (`samples/events/*.jsonl`) and the contact details they carry."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "SAMPLES",
    "SAMPLE_FILES",
    "contact_details",
    "patient_ids",
    "sample_events",
    "sample_ndjson",
    "shifted",
]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "events"
SAMPLE_FILES = sorted(SAMPLES.glob("*.jsonl"))

# The event fields that hold times, as paths into the event.
_TIMES = (
    ("occurred_at",),
    ("appointment", "start"),
    ("encounter", "admitted_at"),
    ("encounter", "discharged_at"),
)


def sample_events(name: str) -> list[dict[str, Any]]:
    """The events of one sample stream (`cardiology-consult`, ...), in file order."""
    text = (SAMPLES / f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sample_ndjson(name: str) -> bytes:
    return (SAMPLES / f"{name}.jsonl").read_bytes()


def _all_events() -> list[dict[str, Any]]:
    return [event for path in SAMPLE_FILES for event in sample_events(path.stem)]


def contact_details() -> set[str]:
    """Every phone number and email address of a patient or caregiver in the samples.

    Phone numbers come in their E.164 form and as their ten national digits.
    """
    found: set[str] = set()
    for event in _all_events():
        patient = event["patient"]
        for person in (patient, *(patient.get("caregivers") or [])):
            for key in ("phone", "email"):
                value = person.get(key)
                if value:
                    found.add(value)
                    if key == "phone":
                        found.add(value.removeprefix("+1"))
    return found


def patient_ids() -> set[str]:
    return {event["patient"]["id"] for event in _all_events()}


def shifted(event: dict[str, Any], by: timedelta) -> dict[str, Any]:
    """A copy of `event` with every time moved by `by` (offsets kept)."""
    copy: dict[str, Any] = json.loads(json.dumps(event))
    for path in _TIMES:
        holder = copy
        for part in path[:-1]:
            holder = holder.get(part) or {}
        value = holder.get(path[-1])
        if isinstance(value, str):
            holder[path[-1]] = (datetime.fromisoformat(value) + by).isoformat()
    return copy
