"""Patient data from partial updates: what is known of a patient, field by field.

Events carry the patient block their source had at hand, and that is often
partial: a FHIR Appointment names the patient by id alone, an HL7 PID may
lack the phone. The rule, the same for every source:

1. A field the block does not state keeps its last known value; an explicit
   null (see `Patient.cleared`) clears it.
2. Per field, the newest fact wins: the one whose event occurred last, the
   event id breaking ties between events of the same instant. Arrival order
   plays no part, so any order of the same facts ends in the same patient.
3. Caregivers are one field: a block that lists caregivers replaces the
   whole list.

This module holds the rule as a pure function; the processor (HTTP, Kafka,
HL7 MLLP, FHIR) and the simulator both apply patient data through it, and
the store keeps the stamps beside the patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .event import Patient, PatientField

__all__ = ["KnownPatient", "Stamp", "merge_patient"]


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """When a fact was stated: its event's `occurred_at`, then the event id.

    Ordered as a tuple, so the newer of two stamps is `max`.
    """

    at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class KnownPatient:
    """What is known of one patient, and the stamp of the fact behind each field.

    `seen_at` is when the newest fact about the patient occurred, whatever it
    stated; a field without a stamp was never stated.
    """

    patient: Patient
    seen_at: datetime
    stamps: Mapping[PatientField, Stamp] = field(default_factory=dict)


def merge_patient(known: KnownPatient | None, fact: Patient, stamp: Stamp) -> KnownPatient:
    """Fold one event's patient block into what is known, field by field.

    Args:
        known: what is known so far, or None for a patient not seen before.
        fact: the event's patient block; only the fields it states count.
        stamp: the event's `occurred_at` and id.

    Raises:
        ValueError: if `fact` is about another patient than `known`.
    """
    if known is None:
        known = KnownPatient(Patient(fact.id), stamp.at)
    elif known.patient.id != fact.id:
        raise ValueError("merge_patient: the fact is about another patient")
    stamps = dict(known.stamps)
    taken: set[PatientField] = set()
    for name in fact.stated():
        held = stamps.get(name)
        # Not `>=`: the same event applied twice changes nothing the second time.
        if held is not None and held >= stamp:
            continue
        stamps[name] = stamp
        taken.add(name)
    seen_at = max(known.seen_at, stamp.at)
    if not taken and seen_at == known.seen_at:
        return known

    base = known.patient

    def source(name: PatientField) -> Patient:
        return fact if name in taken else base

    # What is known is a value or nothing: an explicit null is only a fact's.
    patient = Patient(
        id=fact.id,
        phone=source("phone").phone,
        email=source("email").email,
        language=source("language").language,
        timezone=source("timezone").timezone,
        preferred_channel=source("preferred_channel").preferred_channel,
        caregivers=source("caregivers").caregivers,
    )
    return KnownPatient(patient, seen_at, stamps)
