"""FHIR R4 resources to canonical events: the samples, every status, errors by FHIRPath."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.fhir import (
    APPOINTMENT_STATUS,
    ENCOUNTER_STATUS,
    FhirConfig,
    FhirError,
    bundle_events,
    resource_event,
)
from orchestrator.event_schema import dump_event
from tests.samples import ROOT

DATA = ROOT / "tests" / "data" / "fhir"
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
CONFIG = FhirConfig()


def resource(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def test_the_sample_appointment_becomes_a_booking() -> None:
    event = dump_event(resource_event(resource("Appointment-example.json"), CONFIG, NOW))
    assert event["id"].startswith("fhir:Appointment/example:booked:")
    del event["id"]
    assert event == {
        "type": "appointment.booked",
        "occurred_at": "2026-03-02T14:00:00+00:00",  # no meta.lastUpdated, `created` a bare date
        "source": "fhir",
        "patient": {"id": "example"},  # a reference only: nothing else is known, nothing cleared
        "appointment": {
            "id": "example",
            "start": "2013-12-10T09:00:00+00:00",
            "service": "52",
            "location": "South Wing, second floor",
            "provider": "Dr Adam Careful",
        },
        "encounter": None,
        "attributes": {"fhir": {"resource": "Appointment/example", "status": "booked"}},
    }


def test_the_sample_encounter_becomes_a_discharge_at_its_end() -> None:
    event = resource_event(resource("Encounter-home.json"), CONFIG, NOW)
    assert event.type.value == "patient.discharged"
    assert event.occurred_at == datetime(2015, 1, 17, 6, 30, tzinfo=UTC)
    assert event.encounter is not None
    assert (event.encounter.id, event.encounter.service) == ("home", "HH")
    assert event.encounter.admitted_at == datetime(2015, 1, 17, 6, 0, tzinfo=UTC)


def test_the_sample_transaction_bundle_has_no_appointment_or_encounter() -> None:
    kind, entries = bundle_events(resource("Bundle-bundle-transaction.json"), CONFIG, NOW)
    assert kind == "transaction"
    assert len(entries) == 10
    assert all(e.event is None and e.error is None for e in entries)


@pytest.mark.parametrize(("status", "expected"), sorted(APPOINTMENT_STATUS.items()))
def test_every_appointment_status_maps(status: str, expected: Any) -> None:
    data = resource("Appointment-example.json") | {"status": status}
    assert resource_event(data, CONFIG, NOW).type is expected


@pytest.mark.parametrize(("status", "expected"), sorted(ENCOUNTER_STATUS.items()))
def test_every_encounter_status_maps(status: str, expected: Any) -> None:
    data = resource("Encounter-home.json") | {"status": status}
    assert resource_event(data, CONFIG, NOW).type is expected


def test_a_discharge_disposition_is_kept() -> None:
    data = resource("Encounter-home.json") | {
        "hospitalization": {"dischargeDisposition": {"coding": [{"code": "home"}]}}
    }
    event = resource_event(data, CONFIG, NOW)
    assert event.encounter is not None and event.encounter.disposition == "home"


def test_a_new_version_of_a_resource_is_a_new_event_and_the_same_version_a_duplicate() -> None:
    first = resource("Appointment-example.json") | {"meta": {"versionId": "1"}}
    second = first | {"meta": {"versionId": "2"}}
    ids = {resource_event(d, CONFIG, NOW).id for d in (first, first, second)}
    assert ids == {f"fhir:Appointment/example:booked:{v}" for v in ("1", "2")}


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"status": "pending"}, "Appointment.status"),
        ({"start": "2013-12-10"}, "Appointment.start"),  # a date is no instant
        (
            {"participant": [{"status": "accepted", "actor": {"reference": 5}}]},
            "Appointment.participant[0].actor.reference",
        ),
        ({"id": None, "identifier": None}, "Appointment.id"),
    ],
)
def test_errors_name_the_element_by_fhirpath(change: dict[str, Any], expression: str) -> None:
    data = {
        k: v for k, v in (resource("Appointment-example.json") | change).items() if v is not None
    }
    with pytest.raises(FhirError) as caught:
        resource_event(data, CONFIG, NOW)
    assert caught.value.issues[0].expression == expression


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["Appointment", "Encounter", "Bundle"]),
    st.dictionaries(
        st.sampled_from(
            ["id", "status", "start", "participant", "subject", "period", "entry", "type", "meta"]
        ),
        _JSON,
        max_size=6,
    ),
)
def test_arbitrary_json_gives_events_or_a_fhir_error_never_a_crash(
    kind: str, fields: dict[str, Any]
) -> None:
    data = {"resourceType": kind, **fields}
    with contextlib.suppress(FhirError):
        if kind == "Bundle":
            bundle_events(data, CONFIG, NOW)
        else:
            resource_event(data, CONFIG, NOW)


# -- patient references -------------------------------------------------------------

PHONE = {"system": "sms", "value": "+15555550100"}


def _with_patient_reference(reference: str) -> dict[str, Any]:
    appointment = resource("Appointment-example.json")
    appointment["participant"][0]["actor"]["reference"] = reference
    return appointment


def _bundle_with(appointment: dict[str, Any]) -> dict[str, Any]:
    """The sample transaction bundle, a phone on each Patient, and the appointment."""
    bundle = resource("Bundle-bundle-transaction.json")
    for entry in bundle["entry"]:
        if entry.get("resource", {}).get("resourceType") == "Patient":
            entry["resource"]["telecom"] = [PHONE]
    bundle["entry"].append({"fullUrl": "urn:uuid:5b6d7e01", "resource": appointment})
    return bundle


def _bundle_patient(reference: str) -> Any:
    _, entries = bundle_events(_bundle_with(_with_patient_reference(reference)), CONFIG, NOW)
    last = entries[-1]
    assert last.error is None, last.error
    assert last.event is not None
    return last.event.patient


@pytest.mark.parametrize(
    ("reference", "patient_id"),
    [
        # A POSTed Patient has no id yet: its identifier is the one that lasts.
        ("urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059", "234234"),
        ("http://example.org/fhir/Patient/123", "123"),
        ("Patient/123a", "123a"),
        ("Patient/123a/_history/2", "123a"),
    ],
)
def test_a_bundle_patient_reference_resolves_to_its_entry(reference: str, patient_id: str) -> None:
    patient = _bundle_patient(reference)
    assert (patient.id, patient.phone) == (patient_id, PHONE["value"])


def test_a_urn_uuid_patient_without_id_or_identifier_is_an_error() -> None:
    reference = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    bundle = _bundle_with(_with_patient_reference(reference))
    _, entries = bundle_events(bundle, CONFIG, NOW)
    error = entries[-1].error
    assert error is not None
    assert error.issues[0].expression.endswith("participant[0].actor.reference")


def test_a_contained_patient_is_read_from_the_resource() -> None:
    appointment = _with_patient_reference("#p1")
    appointment["contained"] = [{"resourceType": "Patient", "id": "p1", "telecom": [PHONE]}]
    patient = resource_event(appointment, CONFIG, NOW).patient
    assert (patient.id, patient.phone) == ("p1", PHONE["value"])


def test_a_patient_reference_alone_states_nothing_but_the_id() -> None:
    event = resource_event(_with_patient_reference("Patient/p1"), CONFIG, NOW)
    assert (event.patient.id, event.patient.stated()) == ("p1", frozenset())
    assert dump_event(event)["patient"] == {"id": "p1"}


def test_a_patient_resource_states_only_the_details_it_holds() -> None:
    appointment = _with_patient_reference("#p1")
    appointment["contained"] = [{"resourceType": "Patient", "id": "p1", "telecom": [PHONE]}]
    patient = resource_event(appointment, CONFIG, NOW).patient
    assert patient.stated() == {"phone"}


def test_a_versioned_reference_gives_the_patient_id_without_the_version() -> None:
    event = resource_event(_with_patient_reference("Patient/p1/_history/3"), CONFIG, NOW)
    assert event.patient.id == "p1"
    encounter = resource("Encounter-home.json")
    encounter["subject"]["reference"] = "http://example.org/fhir/Patient/p1/_history/3"
    assert resource_event(encounter, CONFIG, NOW).patient.id == "p1"


@pytest.mark.parametrize(
    "change",
    [
        {"communication": ["x"]},
        {"communication": [{"language": "en"}]},
        {"communication": [{"language": {"coding": "en"}}]},
        {"communication": [{"language": {"coding": [{"code": 5}]}}]},
        {"communication": 5},
        {"telecom": 5},
        {"telecom": ["x", {"system": "sms", "value": 5}]},
    ],
)
def test_a_patient_of_the_wrong_shape_gives_its_event_without_those_details(
    change: dict[str, Any],
) -> None:
    bundle = _bundle_with(_with_patient_reference("http://example.org/fhir/Patient/123"))
    patient_entry = next(e for e in bundle["entry"] if e.get("fullUrl", "").endswith("/123"))
    patient_entry["resource"] = {
        k: v for k, v in patient_entry["resource"].items() if k != "telecom"
    }
    patient_entry["resource"].update(change)
    _, entries = bundle_events(bundle, CONFIG, NOW)
    event = entries[-1].event
    assert event is not None
    assert (event.patient.id, event.patient.phone, event.patient.language) == ("123", None, None)
