"""HL7 v2 scheduling (SIU) and ADT messages into canonical events.

| message | event |
|---|---|
| SIU^S12 | appointment.booked |
| SIU^S13 | appointment.rescheduled |
| SIU^S14 | appointment.booked (a modification: the journey takes the new details, sends nothing new) |
| SIU^S15, SIU^S17 | appointment.cancelled |
| SIU^S26 | appointment.no_show |
| ADT^A01 | patient.admitted |
| ADT^A03 | patient.discharged |
| ADT^A04, ADT^A08 | patient.updated (registration, demographics) |
| ADT^A11, ADT^A13 | patient.updated with `attributes.cancels` (the canonical event v1 has no cancellation of an admission or a discharge) |

The type comes from MSH-9 (EVN-1 may disagree in real feeds; MSH-9 wins).
The event id is `hl7:<MSH-3>@<MSH-4>:<MSH-10>:<trigger>`, so a resent
message is a duplicate; the sending application is part of it because two
systems at one facility count control ids independently, and the trigger
because real senders reuse control ids across message types.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import hl7
import phonenumbers
from babel import Locale, UnknownLocaleError

from orchestrator.event import (
    Appointment,
    Encounter,
    Event,
    EventType,
    Patient,
    PatientField,
    bound_id,
)
from orchestrator.limits import event_problems

from .hl7_message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    Hl7Error,
    Hl7Message,
    Location,
    Segment,
)

__all__ = ["TRIGGERS", "Hl7Config", "map_message", "split_messages", "to_event"]

TRIGGERS: dict[tuple[str, str], EventType] = {
    ("SIU", "S12"): EventType.APPOINTMENT_BOOKED,
    ("SIU", "S13"): EventType.APPOINTMENT_RESCHEDULED,
    ("SIU", "S14"): EventType.APPOINTMENT_BOOKED,
    ("SIU", "S15"): EventType.APPOINTMENT_CANCELLED,
    ("SIU", "S17"): EventType.APPOINTMENT_CANCELLED,
    ("SIU", "S26"): EventType.APPOINTMENT_NO_SHOW,
    ("ADT", "A01"): EventType.PATIENT_ADMITTED,
    ("ADT", "A03"): EventType.PATIENT_DISCHARGED,
    ("ADT", "A04"): EventType.PATIENT_UPDATED,
    ("ADT", "A08"): EventType.PATIENT_UPDATED,
    ("ADT", "A11"): EventType.PATIENT_UPDATED,
    ("ADT", "A13"): EventType.PATIENT_UPDATED,
}
_CANCELS = {"A11": EventType.PATIENT_ADMITTED.value, "A13": EventType.PATIENT_DISCHARGED.value}
# XTN-3 equipment types that can take an SMS, best first; email lives under these.
_PHONE_EQUIPMENT = ("CP", "PH", "")
_EMAIL_EQUIPMENT = ("INTERNET", "X.400")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# HL7 v2's explicit null: the sender says "delete the value you hold" (chapter 2, null values).
_NULL = '""'
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")
# Where the input limits' problems are reported, by the canonical field they name.
_SEGMENT_OF = {"patient": "PID", "appointment": "SCH", "encounter": "PV1"}
# DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]; an offset of 24 hours or more, or
# of 60 minutes or more, parses but fails (or silently shifts) on conversion to UTC.
_DTM = re.compile(
    r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?"
    r"(?:[+-](?:[01]\d|2[0-3])[0-5]\d)?"
)


@dataclass(frozen=True, slots=True)
class Hl7Config:
    """What a site configures about its feeds.

    `timezone` reads times sent without an offset; without it such a time is
    an error rather than a guess. `assigning_authority` picks the PID-3
    identifier (CX-4 namespace or universal id); without it, the first of
    type MR, else the first. `services` maps a sender's service codes to
    the flows' service names.
    """

    timezone: str | None = None
    assigning_authority: str | None = None
    services: Mapping[str, str] = field(default_factory=dict)
    default_region: str = "US"
    source: str = "hl7v2"

    def zone(self) -> tzinfo | None:
        return _zone(self.timezone) if self.timezone else None


@lru_cache(maxsize=32)
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def split_messages(text: bytes | str) -> Iterator[tuple[int, bytes | str]]:
    """The messages of a file, with the line each starts on.

    Accepts MLLP-framed files and batch envelopes (FHS/BHS/BTS/FTS are
    skipped); a new message starts at every MSH segment.
    """
    if isinstance(text, bytes):
        text = text.replace(b"\x0b", b"\n").replace(b"\x1c", b"\n").decode("utf-8-sig", "replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    current: list[str] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        head = line.lstrip("\ufeff")[:3]
        if head in ("FHS", "BHS", "BTS", "FTS"):
            continue
        if head == "MSH":
            if current:
                yield start, "\r".join(current)
            current, start = [line], number
        elif current:
            current.append(line)
        elif line.strip():
            # Text before the first MSH is a message of its own, to be reported.
            current, start = [line], number
    if current:
        yield start, "\r".join(current)


def to_event(raw: bytes | str, config: Hl7Config) -> Event:
    """Parse and map one raw message.

    Raises:
        Hl7Error: naming segment and field.
    """
    return map_message(Hl7Message.parse(raw), config)


def map_message(message: Hl7Message, config: Hl7Config) -> Event:
    """The canonical event one parsed message stands for.

    Raises:
        Hl7Error: the type is not supported, or a field needed is missing or malformed.
    """
    msh = message.msh
    kind, trigger = msh.get(9, 1), msh.get(9, 2)
    if not kind:
        raise Hl7Error(msh.location(9, 1), "no message type", REQUIRED_FIELD_MISSING, reject=True)
    event_type = TRIGGERS.get((kind, trigger))
    if event_type is None:
        known = kind in {k for k, _ in TRIGGERS}
        raise Hl7Error(
            msh.location(9, 2 if known else 1),
            f"message type {kind}^{trigger} is not supported; expected one of "
            + ", ".join(f"{k}^{t}" for k, t in TRIGGERS),
            UNSUPPORTED_EVENT_CODE if known else UNSUPPORTED_MESSAGE_TYPE,
            reject=True,
        )
    control = msh.get(10)
    if not control:
        raise Hl7Error(msh.location(10), "no message control id", REQUIRED_FIELD_MISSING)
    facility = msh.get(4) or msh.get(4, 2) or msh.get(3) or "unknown"
    application = msh.get(3) or msh.get(3, 2)
    zone = config.zone()
    evn = message.first("EVN")
    occurred = None
    if evn is not None:
        occurred = _time(evn, 6, zone) or _time(evn, 2, zone)
    occurred = occurred or _time(msh, 7, zone)
    if occurred is None:
        raise Hl7Error(msh.location(7), "no message date/time", REQUIRED_FIELD_MISSING)
    pid = message.first("PID")
    if pid is None:
        raise Hl7Error(Location("PID"), "no PID segment", REQUIRED_FIELD_MISSING)
    attributes: dict[str, Any] = {
        "hl7": {"message_type": f"{kind}^{trigger}", "control_id": control, "facility": facility}
    }
    appointment = encounter = None
    if kind == "SIU":
        appointment = Appointment(**_appointment(message, config, zone, trigger))
    elif trigger in ("A01", "A03"):
        encounter = Encounter(**_encounter(message, config, zone, trigger))
    else:
        pv1 = message.first("PV1")
        visit = pv1.get(19) if pv1 is not None else ""
        if visit:
            attributes["encounter_id"] = bound_id(visit)
        if trigger in _CANCELS:
            attributes["cancels"] = _CANCELS[trigger]
    # Built directly, not through the canonical schema's pydantic models: every
    # value was checked above as the schema checks it (E.164 phone, email,
    # language tag, aware UTC times), and validating again would halve the
    # throughput. tests/connectors/test_hl7v2.py holds the two in agreement.
    # The input limits are the one check both paths share.
    event = Event(
        id=_event_id(application, facility, control, trigger),
        type=event_type,
        occurred_at=occurred,
        source=config.source,
        patient=Patient(**_patient(message, pid, config)),
        appointment=appointment,
        encounter=encounter,
        attributes=attributes,
    )
    problems = event_problems(event)
    if problems:
        segment = _SEGMENT_OF.get(problems[0].partition(".")[0], "MSH")
        raise Hl7Error(Location(segment), "; ".join(problems), DATA_TYPE_ERROR)
    return event


def _event_id(application: str, facility: str, control: str, trigger: str) -> str:
    """`hl7:<app>@<facility>:<control>:<trigger>`, readable and collision-free.

    Over the length limit, a readable prefix and the SHA-256 of the whole key
    (`bound_id`, as for every source). "~" is always percent-encoded in a part,
    so a digested id never equals a plain one.
    """
    return bound_id(
        f"hl7:{_id_part(application)}@{_id_part(facility)}:{_id_part(control)}:{trigger}"
    )


def _id_part(text: str) -> str:
    # Percent-encoding, not replacement: "X/1" and "X 1" must stay distinct ids,
    # and "@" and ":" inside a part must not read as separators.
    return _ID_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), text)


# -- patient ---------------------------------------------------------------------


def _patient(message: Hl7Message, pid: Segment, config: Hl7Config) -> dict[str, Any]:
    """The PID's contact points: a field the message leaves empty stays unknown.

    Only HL7's explicit null (`""`, "delete what you hold") clears one: phone
    and email when PID-13 and PID-14 are each `""` or empty, language when
    PID-15 is `""`.
    """
    patient: dict[str, Any] = {"id": bound_id(_patient_id(message, pid, config))}
    cleared: set[PatientField] = set()
    telecom_deleted = _deleted(pid, 13, 14)
    phone = _phone(message, pid, config.default_region)
    if phone:
        patient["phone"] = phone
    elif telecom_deleted:
        cleared.add("phone")
    email = _email(message, pid)
    if email:
        patient["email"] = email
    elif telecom_deleted:
        cleared.add("email")
    # CWE-1, else the alternate code in CWE-4 (CWE-2 is display text).
    language = _language(pid.get(15, 1) or pid.get(15, 4))
    if language:
        patient["language"] = language
    elif _deleted(pid, 15):
        cleared.add("language")
    if cleared:
        patient["cleared"] = frozenset(cleared)
    return patient


def _deleted(pid: Segment, *fields: int) -> bool:
    """Whether the fields hold HL7's explicit null (`""`), and nothing else."""
    values = [pid.raw(f).strip() for f in fields]
    return _NULL in values and all(v in ("", _NULL) for v in values)


def _patient_id(message: Hl7Message, pid: Segment, config: Hl7Config) -> str:
    wanted = config.assigning_authority
    first = typed = None
    for rep in pid.repetitions(3):
        value = message.component_value(rep, 1, 1)
        if not value:
            continue
        first = first or value
        if wanted is not None:
            authority = (message.component_value(rep, 4, 1), message.component_value(rep, 4, 2))
            if wanted in authority:
                return value
        elif typed is None and message.component_value(rep, 5, 1) == "MR":
            typed = value
    if wanted is not None:
        problem = f"no identifier assigned by the configured authority '{wanted}'"
        raise Hl7Error(pid.location(3, 4), problem, REQUIRED_FIELD_MISSING)
    found = typed or first
    if not found:
        raise Hl7Error(pid.location(3, 1), "no patient identifier", REQUIRED_FIELD_MISSING)
    return found


def _phone(message: Hl7Message, pid: Segment, region: str) -> str | None:
    """The best SMS-capable number of PID-13 (home) then PID-14 (business)."""
    candidates: list[tuple[int, str]] = []
    for number_field in (13, 14):
        for rep in pid.repetitions(number_field):
            parts = rep.split(message.component)
            parts += [""] * (12 - len(parts))
            # Escapes are decoded where a value is used: most components are not.
            parts = [message.component_value(p, 1, 1) if p else "" for p in parts[:12]]
            equipment = parts[2].upper()
            if parts[1].upper() == "NET" or equipment in _EMAIL_EQUIPMENT:
                continue
            if equipment not in _PHONE_EQUIPMENT:
                continue  # fax, beeper, TDD: nothing to text
            rank = _PHONE_EQUIPMENT.index(equipment) * 2 + (number_field - 13)
            if parts[6]:  # structured: country, area, local, extension
                text = "".join(p for p in (parts[4] and "+" + parts[4], parts[5], parts[6]) if p)
            else:
                text = parts[11] or parts[0]
            number = _e164(text, region)
            if number:
                candidates.append((rank, number))
    return min(candidates)[1] if candidates else None


@lru_cache(maxsize=4096)
def _e164(text: str, region: str) -> str | None:
    # No numbering plan has numbers this short: skip the costly parse.
    if not text or "@" in text or sum(c.isdigit() for c in text) < 7:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(message: Hl7Message, pid: Segment) -> str | None:
    for number_field in (13, 14):
        for rep in pid.repetitions(number_field):
            # XTN-4 since v2.3; older senders put the address in XTN-1.
            for candidate in (
                message.component_value(rep, 4, 1),
                message.component_value(rep, 1, 1),
            ):
                if _EMAIL.match(candidate):
                    return candidate
    return None


@lru_cache(maxsize=256)
def _language(code: str) -> str | None:
    """A language tag from PID-15: ISO 639-1 or 639-2 codes, with or without a region."""
    if not code:
        return None
    try:
        language = str(Locale.parse(code.replace("-", "_")).language)
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    return language if _LANGUAGE.fullmatch(language) else None


# -- appointment and encounter -------------------------------------------------------


# Triggers that book or move an appointment: they must say when it is. A
# cancellation or a no-show names the appointment by id and may leave it out.
_NEEDS_START = frozenset({"S12", "S13", "S14"})


def _appointment(
    message: Hl7Message, config: Hl7Config, zone: tzinfo | None, trigger: str
) -> dict[str, Any]:
    sch = message.first("SCH")
    if sch is None:
        raise Hl7Error(Location("SCH"), "no SCH segment", REQUIRED_FIELD_MISSING)
    appointment_id = sch.get(2) or sch.get(1)
    if not appointment_id:
        raise Hl7Error(
            sch.location(2),
            "no filler (SCH-2) or placer (SCH-1) appointment id",
            REQUIRED_FIELD_MISSING,
        )
    ais = message.first("AIS")
    start = None
    tq1 = message.first("TQ1")
    if tq1 is not None:
        start = _time(tq1, 7, zone)
    if start is None and ais is not None:
        start = _time(ais, 4, zone)
    if start is None:
        start = _time(sch, 11, zone, component=4)
    if start is None and trigger in _NEEDS_START:
        # Every reminder of a booking is timed from its start: acknowledging one
        # without it would lose them all without a word to the sender.
        raise Hl7Error(
            sch.location(11, 4),
            "no appointment start time: TQ1-7, AIS-4 and SCH-11.4 are all empty",
            REQUIRED_FIELD_MISSING,
        )
    service_code = (ais.get(3) if ais is not None else "") or sch.get(7) or sch.get(8)
    pv1 = message.first("PV1")
    if not service_code and pv1 is not None:
        service_code = pv1.get(10)
    appointment: dict[str, Any] = {"id": bound_id(appointment_id)}
    if start is not None:
        appointment["start"] = start
    if service_code:
        appointment["service"] = config.services.get(service_code, service_code)
    ail = message.first("AIL")
    location = _place(ail, 3) if ail is not None else ""
    if not location and pv1 is not None:
        location = _place(pv1, 3)
    if location:
        appointment["location"] = location
    aip = message.first("AIP")
    provider = _person(aip, 3) if aip is not None else ""
    if not provider and pv1 is not None:
        provider = _person(pv1, 7)
    if provider:
        appointment["provider"] = provider
    return appointment


def _encounter(
    message: Hl7Message, config: Hl7Config, zone: tzinfo | None, trigger: str
) -> dict[str, Any]:
    pv1 = message.first("PV1")
    if pv1 is None:
        raise Hl7Error(Location("PV1"), "no PV1 segment", REQUIRED_FIELD_MISSING)
    visit = pv1.get(19) or pv1.get(50)
    if not visit:
        raise Hl7Error(pv1.location(19), "no visit number", REQUIRED_FIELD_MISSING)
    encounter: dict[str, Any] = {"id": bound_id(visit)}
    admitted = _time(pv1, 44, zone)
    discharged = _time(pv1, 45, zone)
    if trigger == "A03" and discharged is None:
        raise Hl7Error(pv1.location(45), "no discharge date/time", REQUIRED_FIELD_MISSING)
    if admitted is not None:
        encounter["admitted_at"] = admitted
    if discharged is not None:
        encounter["discharged_at"] = discharged
    disposition = pv1.get(36)
    if disposition:
        encounter["disposition"] = disposition
    service = pv1.get(10)
    if service:
        encounter["service"] = config.services.get(service, service)
    return encounter


def _place(segment: Segment, number: int) -> str:
    """A PL location as people read it: its description, else facility, unit, room."""
    description = segment.get(number, 9)
    if description:
        return description
    parts = (segment.get(number, 4), segment.get(number, 1), segment.get(number, 2))
    return " ".join(p for p in parts if p)


def _person(segment: Segment, number: int) -> str:
    """An XCN name as people read it: prefix, given, family."""
    parts = (segment.get(number, 6), segment.get(number, 3), segment.get(number, 2, 1))
    return " ".join(p for p in parts if p)


def _time(
    segment: Segment, number: int, zone: tzinfo | None, *, component: int = 1
) -> datetime | None:
    """A DTM field as a UTC time: read at its own offset, else in the facility's zone."""
    text = segment.get(number, component)
    if not text:
        return None
    where = segment.location(number, component if component > 1 else 0)
    try:
        if not _DTM.fullmatch(text):
            raise ValueError(text)
        value: datetime = hl7.parse_datetime(text)
    except (ValueError, TypeError):
        raise Hl7Error(
            where, "not an HL7 date/time (YYYYMMDDHHMM[SS][+ZZZZ])", DATA_TYPE_ERROR
        ) from None
    if value.tzinfo is None:
        if zone is None:
            raise Hl7Error(
                where,
                "a time without a UTC offset and no facility time zone configured "
                "(ORCHESTRATOR_HL7_TIMEZONE)",
                DATA_TYPE_ERROR,
            )
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        # Years 0001 and 9999 (open-ended placeholders) can leave datetime's range.
        raise Hl7Error(where, "a date/time out of range in UTC", DATA_TYPE_ERROR) from None
