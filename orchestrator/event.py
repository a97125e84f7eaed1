"""The canonical event as core values: frozen dataclasses the engine reads.

Parsing and validation of what arrives lives in `event_schema`; this module
holds only the shapes and the few facts derived from them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from typing_extensions import TypeAliasType

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_SOURCE_LENGTH",
    "PATIENT_FIELDS",
    "Appointment",
    "Caregiver",
    "Channel",
    "Encounter",
    "Event",
    "EventType",
    "JSONValue",
    "Patient",
    "PatientField",
    "bound_id",
]

# What the store's columns hold: an event's identifiers (its own, the patient's,
# a caregiver's, an appointment's, an encounter's) and its source.
MAX_ID_LENGTH = 200
MAX_SOURCE_LENGTH = 100
# SHA-256 in hex: what ends an identifier too long for its column.
_DIGEST_LENGTH = 64


def bound_id(value: str) -> str:
    """`value` as the store keeps it: unchanged up to `MAX_ID_LENGTH` characters.

    A longer id becomes its first 135 characters, "~" and the SHA-256 of the
    whole id (200 in all): the same long id always gives the same value, and
    two long ids sharing any prefix still differ. Every source (HTTP, Kafka,
    HL7 v2, FHIR) bounds its ids with this one rule, so one identifier sent
    through two of them names one patient.
    """
    if len(value) <= MAX_ID_LENGTH:
        return value
    # surrogatepass: an id with a lone surrogate still gets its digest; the
    # input checks refuse it later, naming the field.
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[: MAX_ID_LENGTH - _DIGEST_LENGTH - 1]}~{digest}"


# A named recursive alias, so that pydantic can validate and dump it.
JSONValue = TypeAliasType(
    "JSONValue", 'str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None'
)


class EventType(StrEnum):
    """Every event type of the canonical event v1, in care-lifecycle order.

    The order breaks ties between events that occurred at the same instant
    (a booking sorts before its cancellation).
    """

    REFERRAL_RECEIVED = "referral.received"
    APPOINTMENT_BOOKED = "appointment.booked"
    APPOINTMENT_RESCHEDULED = "appointment.rescheduled"
    INTAKE_SENT = "intake.sent"
    INTAKE_STARTED = "intake.started"
    INTAKE_DOCUMENTS_MISSING = "intake.documents_missing"
    INTAKE_COMPLETED = "intake.completed"
    APPOINTMENT_CHECKED_IN = "appointment.checked_in"
    APPOINTMENT_COMPLETED = "appointment.completed"
    APPOINTMENT_NO_SHOW = "appointment.no_show"
    APPOINTMENT_CANCELLED = "appointment.cancelled"
    PATIENT_ADMITTED = "patient.admitted"
    PATIENT_DISCHARGED = "patient.discharged"
    PATIENT_UPDATED = "patient.updated"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_REPLIED = "message.replied"
    CONSENT_OPTED_OUT = "consent.opted_out"
    CONSENT_OPTED_IN = "consent.opted_in"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {t: i for i, t in enumerate(EventType)}


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Caregiver:
    """A proxy who receives the message topics listed in `receives`."""

    id: str
    relationship: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    receives: tuple[str, ...] = ()


PatientField = Literal["phone", "email", "language", "timezone", "preferred_channel", "caregivers"]
PATIENT_FIELDS: tuple[PatientField, ...] = (
    "phone",
    "email",
    "language",
    "timezone",
    "preferred_channel",
    "caregivers",
)


@dataclass(frozen=True, slots=True)
class Patient:
    """What one source says about a patient, or what is known of them.

    A field with a value states it. A field without one (`None`, no
    caregivers) is unknown to the source unless `cleared` names it: then the
    source said explicitly that there is none. An event's patient block is
    usually partial (a FHIR reference carries only the id), so the runtimes
    fold it into what they know with `patient_merge.merge_patient`.
    """

    id: str
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    timezone: str | None = None
    preferred_channel: Channel | None = None
    caregivers: tuple[Caregiver, ...] = ()
    cleared: frozenset[PatientField] = frozenset()

    def stated(self) -> frozenset[PatientField]:
        """The fields this block says something about: a value, or an explicit null."""
        return self.cleared.union(name for name in PATIENT_FIELDS if getattr(self, name))


@dataclass(frozen=True, slots=True)
class Appointment:
    id: str
    start: datetime | None = None
    service: str | None = None
    location: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Encounter:
    id: str
    admitted_at: datetime | None = None
    discharged_at: datetime | None = None
    disposition: str | None = None
    service: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One canonical event; `id` is its idempotency key."""

    id: str
    type: EventType
    occurred_at: datetime
    source: str
    patient: Patient
    appointment: Appointment | None = None
    encounter: Encounter | None = None
    attributes: Mapping[str, JSONValue] = field(default_factory=dict)

    @property
    def service(self) -> str | None:
        """The service the event is about: appointment, encounter, else referral."""
        if self.appointment is not None and self.appointment.service:
            return self.appointment.service
        if self.encounter is not None and self.encounter.service:
            return self.encounter.service
        value = self.attributes.get("service")
        return value if isinstance(value, str) else None

    def sort_key(self) -> tuple[datetime, int, str]:
        """The order in which the engine folds events, whatever order they arrive in."""
        return (self.occurred_at, self.type.rank, self.id)
