"""The canonical event v1 at the boundary: pydantic models, parsing, dumping.

`parse_event` turns JSON (text, bytes or a decoded mapping) into the core
`Event`, or raises `InputError` naming the event and every bad field without
echoing the patient's values. Unknown fields are kept in `attributes` under
their dotted path, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import InputError
from .event import (
    MAX_SOURCE_LENGTH,
    PATIENT_FIELDS,
    Appointment,
    Caregiver,
    Channel,
    Encounter,
    Event,
    EventType,
    JSONValue,
    Patient,
    PatientField,
    bound_id,
)
from .limits import event_problems, read_json, unsafe_text

__all__ = [
    "AppointmentV1",
    "AwareDatetime",
    "CaregiverV1",
    "EncounterV1",
    "EventV1",
    "PatientV1",
    "dump_event",
    "parse_event",
    "parse_event_json",
]

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# The start of an ISO 8601 date and time: a bare number (read by pydantic as
# Unix time) or a date alone is not what the README promises to take.
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_text(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME.match(value)):
        return value
    raise ValueError(
        "expected an ISO 8601 date and time with an offset, such as '2026-03-02T14:00:00Z'"
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset; expected ISO 8601 with an offset or Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is a valid text for an instant after year 9999.
        raise ValueError("out of range when converted to UTC") from None


AwareDatetime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_aware)]


def _phone(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or value == "":
        return None
    return _e164(value, (info.context or {}).get("default_region", "US"))


# A patient's number comes back with each of their events; parsing it is a
# tenth of the cost of reading an event, so known answers are kept.
@lru_cache(maxsize=65_536)
def _e164(value: str, region: str) -> str:
    """`value` in E.164 (bad numbers raise, and are not kept)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


def _language(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _LANGUAGE.match(value):
        raise ValueError("not a language tag such as 'en' or 'es-MX'")
    primary, _, rest = value.partition("-")
    return primary.lower() + ("-" + rest if rest else "")


def _timezone(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone such as 'America/Chicago'") from None
    return value


# A longer id is bounded here, as every source bounds it (`bound_id`), not
# refused later by the database in the middle of a batch.
Identifier = Annotated[str, Field(min_length=1), AfterValidator(bound_id)]


class _Part(BaseModel):
    """Base of the nested parts: unknown keys are collected, not rejected."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True, frozen=True)


class CaregiverV1(_Part):
    id: Identifier
    relationship: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    receives: list[str] = Field(default_factory=list)

    _check_phone = field_validator("phone")(_phone)
    _check_email = field_validator("email")(_email)
    _check_language = field_validator("language")(_language)


class PatientV1(_Part):
    id: Identifier
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    timezone: str | None = None
    preferred_channel: Literal["sms", "email"] | None = None
    # null clears the list, as for every patient field; [] says the same.
    caregivers: list[CaregiverV1] | None = None

    _check_phone = field_validator("phone")(_phone)
    _check_email = field_validator("email")(_email)
    _check_language = field_validator("language")(_language)
    _check_timezone = field_validator("timezone")(_timezone)


class AppointmentV1(_Part):
    id: Identifier
    start: AwareDatetime | None = None
    service: str | None = None
    location: str | None = None
    provider: str | None = None


class EncounterV1(_Part):
    id: Identifier
    admitted_at: AwareDatetime | None = None
    discharged_at: AwareDatetime | None = None
    disposition: str | None = None
    service: str | None = None


class EventV1(BaseModel):
    """The canonical event, version 1, as DESIGN.md fixes it."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True, frozen=True)

    id: Identifier
    type: EventType
    occurred_at: AwareDatetime
    source: str = Field(min_length=1, max_length=MAX_SOURCE_LENGTH)
    patient: PatientV1
    appointment: AppointmentV1 | None = None
    encounter: EncounterV1 | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_its_subject(self) -> EventV1:
        kind = self.type.value.partition(".")[0]
        if kind == "appointment" and self.appointment is None:
            raise ValueError(f"an {self.type.value} event needs an 'appointment'")
        admission = self.type in (EventType.PATIENT_ADMITTED, EventType.PATIENT_DISCHARGED)
        if admission and self.encounter is None:
            raise ValueError(f"a {self.type.value} event needs an 'encounter'")
        caregiver = self.attributes.get("caregiver_id")
        if caregiver is not None and not (isinstance(caregiver, str) and caregiver):
            raise ValueError("'attributes.caregiver_id' must be a caregiver's id")
        return self

    def unknown_fields(self) -> dict[str, JSONValue]:
        """Every field the schema does not know, by its dotted path."""
        extra: dict[str, JSONValue] = {}
        _collect_extra(self, "", extra)
        return extra

    def to_core(self, unknown: Mapping[str, JSONValue] | None = None) -> Event:
        """Convert to the core `Event`, moving unknown fields into `attributes`.

        `unknown` is `unknown_fields()`, for a caller that already has it.
        """
        extra = self.unknown_fields() if unknown is None else unknown
        attributes: dict[str, JSONValue] = {**self.attributes, **extra}
        caregiver = attributes.get("caregiver_id")
        if isinstance(caregiver, str):
            # The caregiver's own id was bounded; the reference to it must match.
            attributes["caregiver_id"] = bound_id(caregiver)
        patient = self.patient
        return Event(
            id=self.id,
            type=self.type,
            occurred_at=self.occurred_at,
            source=self.source,
            patient=Patient(
                id=patient.id,
                phone=patient.phone,
                email=patient.email,
                language=patient.language,
                timezone=patient.timezone,
                preferred_channel=Channel(patient.preferred_channel)
                if patient.preferred_channel
                else None,
                caregivers=tuple(
                    Caregiver(
                        id=c.id,
                        relationship=c.relationship,
                        phone=c.phone,
                        email=c.email,
                        language=c.language,
                        receives=tuple(c.receives),
                    )
                    for c in patient.caregivers or ()
                ),
                cleared=_cleared(patient),
            ),
            appointment=Appointment(**_known(self.appointment)) if self.appointment else None,
            encounter=Encounter(**_known(self.encounter)) if self.encounter else None,
            attributes=attributes,
        )


def _cleared(patient: PatientV1) -> frozenset[PatientField]:
    """The fields the block sent empty (null, "" or []): an explicit "none", not absence."""
    return frozenset(
        name
        for name in PATIENT_FIELDS
        if name in patient.model_fields_set and not getattr(patient, name)
    )


def _known(part: BaseModel) -> dict[str, Any]:
    return {name: getattr(part, name) for name in _field_names(type(part))}


# `model_fields` is a computed class property in pydantic; read it once per model.
@cache
def _field_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)


def _collect_extra(model: BaseModel, prefix: str, into: dict[str, JSONValue]) -> None:
    for key, value in (model.model_extra or {}).items():
        into[prefix + key] = value
    for name in _field_names(type(model)):
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _collect_extra(value, f"{prefix}{name}.", into)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _collect_extra(item, f"{prefix}{name}[{i}].", into)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("str", "int", "datetime"):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(event)"


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "enum" and item["loc"] == ("type",):
            message = "unknown event type; expected one of " + ", ".join(t.value for t in EventType)
        elif item["type"] == "string_unicode":
            # pydantic's words for it; the input limits say it as for any other field.
            message = unsafe_text("\ud800") or message
        problems.append(f"{_loc(item['loc'])}: {message}")
    return problems


def parse_event(data: Mapping[str, Any], *, default_region: str = "US") -> Event:
    """Validate a decoded event and return the core `Event`.

    Raises:
        InputError: naming the event id (when there is one) and every bad field.
    """
    if not isinstance(data, Mapping):
        raise InputError("event", ["expected a JSON object"])
    event_id = data.get("id")
    where = "event"
    if isinstance(event_id, str) and event_id and unsafe_text(event_id) is None:
        where = f"event {bound_id(event_id)}"
    try:
        model = EventV1.model_validate(data, context={"default_region": default_region})
    except ValidationError as exc:
        raise InputError(where, _problems(exc)) from None
    unknown = model.unknown_fields()
    clashes = sorted(set(unknown) & set(model.attributes))
    if clashes:
        raise InputError(
            where,
            [
                f"{key}: an unknown field and attributes.{key} would both be kept under "
                f"'{key}'; send one of them"
                for key in clashes
            ],
        )
    event = model.to_core(unknown)
    problems = event_problems(event, unknown=unknown)
    if problems:
        raise InputError(where, problems)
    return event


def parse_event_json(text: str | bytes, *, default_region: str = "US") -> Event:
    """Decode one JSON document (within the input limits) and validate it as an event.

    Raises:
        InputError: a `JsonError` when the text cannot be read.
    """
    return parse_event(read_json(text, where="event"), default_region=default_region)


def dump_event(event: Event) -> dict[str, JSONValue]:
    """Return the event as canonical JSON-ready data (the inverse of `parse_event`)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    data: dict[str, JSONValue] = {
        "id": event.id,
        "type": event.type.value,
        "occurred_at": iso(event.occurred_at),
        "source": event.source,
        "patient": _dump_patient(event.patient),
        "appointment": None,
        "encounter": None,
        "attributes": dict(event.attributes),
    }
    if event.appointment is not None:
        a = event.appointment
        data["appointment"] = {
            "id": a.id,
            "start": iso(a.start),
            "service": a.service,
            "location": a.location,
            "provider": a.provider,
        }
    if event.encounter is not None:
        e = event.encounter
        data["encounter"] = {
            "id": e.id,
            "admitted_at": iso(e.admitted_at),
            "discharged_at": iso(e.discharged_at),
            "disposition": e.disposition,
            "service": e.service,
        }
    return data


def _dump_patient(patient: Patient) -> dict[str, JSONValue]:
    """The fields the block states; one it does not is left out, so it stays unknown."""
    every: dict[str, JSONValue] = {
        "phone": patient.phone,
        "email": patient.email,
        "language": patient.language,
        "timezone": patient.timezone,
        "preferred_channel": patient.preferred_channel.value if patient.preferred_channel else None,
        "caregivers": [
            {
                "id": c.id,
                "relationship": c.relationship,
                "phone": c.phone,
                "email": c.email,
                "language": c.language,
                "receives": list(c.receives),
            }
            for c in patient.caregivers
        ],
    }
    stated = patient.stated()
    return {"id": patient.id, **{k: v for k, v in every.items() if k in stated}}
