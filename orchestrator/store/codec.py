"""Core values to JSON text and back, for the columns that hold them.

pydantic's `TypeAdapter` validates the frozen dataclasses directly, so the
stored form is the dataclasses' own shape and reads back equal.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import TypeAdapter

from ..event import Event, Patient
from ..journey import Journey, ScheduledMessage

__all__ = ["dumps", "loads"]

_T = TypeVar("_T", Journey, ScheduledMessage, Patient, Event)

_ADAPTERS: dict[type, TypeAdapter[object]] = {
    kind: TypeAdapter(kind) for kind in (Journey, ScheduledMessage, Patient, Event)
}


def dumps(value: Journey | ScheduledMessage | Patient | Event) -> str:
    return _ADAPTERS[type(value)].dump_json(value).decode()


def loads(kind: type[_T], text: str | bytes) -> _T:
    value = _ADAPTERS[kind].validate_json(text)
    assert isinstance(value, kind)
    return value
