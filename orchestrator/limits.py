"""The input limits: what the store can hold and read back, checked at the door.

Every source of events reads JSON with `read_json` (HTTP bodies and lines,
Kafka records, FHIR resources, the command line) and checks each event with
`event_problems` (the canonical schema runs it; HL7 v2 mapping, which builds
events directly, runs it too). One rule therefore decides what is refused,
whatever the door, and it refuses before the store sees the input: a value
the store takes but cannot read back, or cannot take on one backend only,
would otherwise fail later, away from its sender, and block what comes
after it. A problem names the field, never the value.

What it leaves to others: identifiers too long for their column are bounded
by `event.bound_id`, not refused; types and formats (E.164, time zones) are
the canonical schema's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import JsonError
from .event import MAX_ID_LENGTH, MAX_SOURCE_LENGTH, Event

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_ATTRIBUTES_SIZE",
    "MAX_ATTRIBUTE_DEPTH",
    "MAX_DOCUMENT_DEPTH",
    "MAX_EMAIL_LENGTH",
    "MAX_INTEGER",
    "MAX_LANGUAGE_LENGTH",
    "MAX_TEXT_LENGTH",
    "MIN_INTEGER",
    "event_problems",
    "read_json",
    "storable_text",
    "time_problem",
    "unsafe_text",
]

# A JSON document (a body, a line, a record) nests at most this deep; a FHIR
# Bundle's deepest real elements sit about 15 levels down.
MAX_DOCUMENT_DEPTH = 64
# An unknown field or attribute value nests at most this deep under its name:
# journeys keep them, and must read them back.
MAX_ATTRIBUTE_DEPTH = 16
# The unknown fields and attributes of one event together, as compact JSON
# (non-ASCII escaped), in characters.
MAX_ATTRIBUTES_SIZE = 16 * 1024
# What a 64-bit integer column, and most JSON readers, hold.
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**63 - 1
# Free text (location, provider, service, relationship, disposition, a caregiver's
# topics, time zone): ample for what a message shows, small enough to render.
MAX_TEXT_LENGTH = 500
# RFC 5321's limit on a path; the store's recipient columns hold it with room.
MAX_EMAIL_LENGTH = 254
# The audit table's language column.
MAX_LANGUAGE_LENGTH = 20
# Times outside these cannot take a flow's offsets and a patient's local time
# without leaving datetime's range (years 1 to 9999).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# NUL: PostgreSQL text cannot hold it. A lone surrogate: no UTF-8 can encode it.
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
# Digits of MAX_INTEGER: longer integers are refused before they are converted.
_INTEGER_DIGITS = len(str(MAX_INTEGER))
_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,100}")


class _NumberOutOfRange(ValueError):
    """Raised inside the JSON parser by a number beyond the limits."""


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > _INTEGER_DIGITS:
        raise _NumberOutOfRange
    value = int(text)
    if not MIN_INTEGER <= value <= MAX_INTEGER:
        raise _NumberOutOfRange
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NumberOutOfRange
    return value


def _constant(_: str) -> Any:
    # NaN, Infinity, -Infinity: Python's json reads them, JSON has none of them.
    raise _NumberOutOfRange


def read_json(text: str | bytes, *, where: str = "body") -> Any:
    """Decode one JSON document within the limits.

    Raises:
        JsonError: naming `where`: not UTF-8 or not JSON (`syntax`), nested
            deeper than `MAX_DOCUMENT_DEPTH` (`depth`), an integer beyond 64
            bits or a number that is not finite (`number`).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonError(where, "syntax", f"not JSON: not UTF-8 (at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise JsonError(where, "syntax", f"not JSON (at position {exc.pos})") from None
    except _NumberOutOfRange:
        raise JsonError(
            where,
            "number",
            f"a number out of range; integers must lie within {MIN_INTEGER} and "
            f"{MAX_INTEGER}, and NaN and Infinity are not JSON",
        ) from None
    except RecursionError:
        # Nesting in the hundreds: the parser's own stack gave out first.
        raise JsonError(where, "depth", _too_deep()) from None
    if _deeper_than(value, MAX_DOCUMENT_DEPTH):
        raise JsonError(where, "depth", _too_deep())
    return value


def _too_deep() -> str:
    return f"nested deeper than {MAX_DOCUMENT_DEPTH} levels"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (without recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def storable_text(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD, for text kept as said.

    For what says why (a reason quoting a refused input): it must itself be
    storable, whatever it quotes.
    """
    return _UNSAFE.sub("\ufffd", value)


def time_problem(moment: datetime) -> str | None:
    """Why an aware `moment` is not one the store and the flows can work with, or None."""
    if EARLIEST <= moment < LATEST:
        return None
    return (
        f"outside {EARLIEST.year} to {LATEST.year - 1} (UTC); "
        "expected a real date, not a placeholder"
    )


def unsafe_text(value: str) -> str | None:
    """Why the store cannot keep `value` as text (a NUL, a lone surrogate), or None."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    if found[0] == "\x00":
        return "contains a NUL character"
    return "contains a lone surrogate (not encodable as UTF-8)"


def event_problems(event: Event, *, unknown: Collection[str] = ()) -> list[str]:
    """Every way `event` passes the input limits, as `path: problem` lines.

    `unknown` are the attribute keys that arrived as unknown fields: they are
    named by their own path, not under `attributes`.
    """
    problems: list[str] = []
    for path, value, limit in _texts(event):
        if value is None:
            continue
        why = unsafe_text(value)
        if why is not None:
            problems.append(f"{path}: {why}")
        elif len(value) > limit:
            problems.append(f"{path}: longer than {limit} characters")
    for path, moment in _times(event):
        why = None if moment is None else time_problem(moment)
        if why is not None:
            problems.append(f"{path}: {why}")
    problems += _attribute_problems(event.attributes, unknown)
    return problems


def _texts(event: Event) -> Iterator[tuple[str, str | None, int]]:
    yield "id", event.id, MAX_ID_LENGTH
    yield "source", event.source, MAX_SOURCE_LENGTH
    patient = event.patient
    yield "patient.id", patient.id, MAX_ID_LENGTH
    yield "patient.phone", patient.phone, MAX_TEXT_LENGTH
    yield "patient.email", patient.email, MAX_EMAIL_LENGTH
    yield "patient.language", patient.language, MAX_LANGUAGE_LENGTH
    yield "patient.timezone", patient.timezone, MAX_TEXT_LENGTH
    for i, caregiver in enumerate(patient.caregivers):
        where = f"patient.caregivers[{i}]"
        yield f"{where}.id", caregiver.id, MAX_ID_LENGTH
        yield f"{where}.relationship", caregiver.relationship, MAX_TEXT_LENGTH
        yield f"{where}.phone", caregiver.phone, MAX_TEXT_LENGTH
        yield f"{where}.email", caregiver.email, MAX_EMAIL_LENGTH
        yield f"{where}.language", caregiver.language, MAX_LANGUAGE_LENGTH
        for j, topic in enumerate(caregiver.receives):
            yield f"{where}.receives[{j}]", topic, MAX_TEXT_LENGTH
    if event.appointment is not None:
        a = event.appointment
        yield "appointment.id", a.id, MAX_ID_LENGTH
        yield "appointment.service", a.service, MAX_TEXT_LENGTH
        yield "appointment.location", a.location, MAX_TEXT_LENGTH
        yield "appointment.provider", a.provider, MAX_TEXT_LENGTH
    if event.encounter is not None:
        e = event.encounter
        yield "encounter.id", e.id, MAX_ID_LENGTH
        yield "encounter.disposition", e.disposition, MAX_TEXT_LENGTH
        yield "encounter.service", e.service, MAX_TEXT_LENGTH


def _times(event: Event) -> Iterator[tuple[str, datetime | None]]:
    yield "occurred_at", event.occurred_at
    if event.appointment is not None:
        yield "appointment.start", event.appointment.start
    if event.encounter is not None:
        yield "encounter.admitted_at", event.encounter.admitted_at
        yield "encounter.discharged_at", event.encounter.discharged_at


def _attribute_problems(attributes: Mapping[str, Any], unknown: Collection[str]) -> list[str]:
    problems: list[str] = []
    for key, value in attributes.items():
        path = _name(key) if key in unknown else f"attributes.{_name(key)}"
        why = unsafe_text(key) if isinstance(key, str) else "a key that is not text"
        if why is not None:
            problems.append(f"{path}: the name {why}")
            continue
        if _deeper_than(value, MAX_ATTRIBUTE_DEPTH):
            problems.append(f"{path}: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
            continue
        problems += _value_problems(path, value)
    if not problems:
        size = len(json.dumps(attributes, separators=(",", ":")))
        if size > MAX_ATTRIBUTES_SIZE:
            problems.append(
                f"attributes: unknown fields and attributes take {size} characters "
                f"as JSON; at most {MAX_ATTRIBUTES_SIZE}"
            )
    return problems


def _value_problems(path: str, value: Any) -> list[str]:
    """Problems of one attribute value, whose depth was checked."""
    if isinstance(value, str):
        why = unsafe_text(value)
        return [f"{path}: {why}"] if why else []
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        ok = MIN_INTEGER <= value <= MAX_INTEGER
        return [] if ok else [f"{path}: an integer beyond 64 bits"]
    if isinstance(value, float):
        finite = value not in (float("inf"), float("-inf")) and value == value
        return [] if finite else [f"{path}: a number that is not finite"]
    if not isinstance(value, dict | list):
        return [f"{path}: not a JSON value"]
    problems: list[str] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            problems += _value_problems(f"{path}[{i}]", item)
            if problems:
                break  # the first one names the field; the rest would repeat it
        return problems
    for key, item in value.items():
        why = unsafe_text(key) if isinstance(key, str) else "a key that is not text"
        if why is not None:
            return [f"{path}: a name inside {why}"]
        problems += _value_problems(f"{path}.{_name(key)}", item)
        if problems:
            break
    return problems


def _name(key: str) -> str:
    """A field name fit for an error: as sent when plain, else a stand-in."""
    return key if isinstance(key, str) and _NAME.fullmatch(key) else "(a field)"
