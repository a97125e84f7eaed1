"""Core values to JSON text and back, for the columns that hold them.

pydantic's `TypeAdapter` validates the frozen dataclasses directly, so the
stored form is the dataclasses' own shape and reads back equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import TypeAdapter

from ..event import Event, Patient, PatientField
from ..journey import Episode, Journey, ScheduledMessage
from ..patient_merge import Stamp

__all__ = ["dumps", "dumps_stamps", "loads", "loads_stamps"]

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
