"""Core values to JSON text and back, for the columns that hold them.

pydantic's `TypeAdapter` validates the frozen dataclasses directly, so the
stored form is the dataclasses' own shape and reads back equal. A processed
event's body is the other kind: the canonical event v1 (`event_schema`), the
form every source is read into, so that history replays through the same
door it came in by.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeVar

from pydantic import TypeAdapter

from ..event import Event, Patient, PatientField
from ..event_schema import dump_event, parse_event_json
from ..journey import Episode, Journey, ScheduledMessage
from ..patient_merge import Stamp

__all__ = ["dumps", "dumps_event", "dumps_stamps", "loads", "loads_event", "loads_stamps"]

_T = TypeVar("_T", Journey, Episode, ScheduledMessage, Patient, Event)

_ADAPTERS: dict[type, TypeAdapter[object]] = {
    kind: TypeAdapter(kind) for kind in (Journey, Episode, ScheduledMessage, Patient, Event)
}


def dumps(value: Journey | Episode | ScheduledMessage | Patient | Event) -> str:
    return _ADAPTERS[type(value)].dump_json(value).decode()


def loads(kind: type[_T], text: str | bytes) -> _T:
    value = _ADAPTERS[kind].validate_json(text)
    assert isinstance(value, kind)
    return value


_STAMPS: TypeAdapter[dict[PatientField, Stamp]] = TypeAdapter(dict[PatientField, Stamp])


def dumps_stamps(stamps: Mapping[PatientField, Stamp]) -> str:
    return _STAMPS.dump_json(dict(stamps)).decode()


def loads_stamps(text: str | bytes) -> dict[PatientField, Stamp]:
    return _STAMPS.validate_json(text)


def dumps_event(event: Event) -> str:
    """The event as canonical JSON text, ASCII only.

    Escaped, any text is storable on both backends: a NUL or a lone surrogate
    the input limits let through would be `\\u0000` here, never the character.
    """
    return json.dumps(dump_event(event), separators=(",", ":"))


def loads_event(text: str) -> Event:
    """Raises `InputError` when the body no longer passes the canonical schema."""
    return parse_event_json(text)
