"""The canonical event at the boundary: parsing, normalising, rejecting, dumping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.errors import InputError
from orchestrator.event import (
    Appointment,
    Caregiver,
    Channel,
    Encounter,
    EventType,
    Patient,
    bound_id,
)
from orchestrator.event_schema import dump_event, parse_event, parse_event_json
from tests.builders import T0, make_event_data, make_patient


def design_event() -> dict[str, Any]:
    """The example event of DESIGN.md, field for field."""
    return {
        "id": "evt-7f3a",
        "type": "appointment.booked",
        "occurred_at": "2026-03-02T14:00:00Z",
        "source": "ehr",
        "patient": {
            "id": "p-1001",
            "phone": "+15555550101",
            "email": "ana@example.org",
            "language": "es",
            "timezone": "America/Chicago",
            "preferred_channel": "sms",
            "caregivers": [
                {
                    "id": "c-1",
                    "relationship": "daughter",
                    "phone": "+15555550102",
                    "email": None,
                    "language": "en",
                    "receives": ["transport", "forms"],
                }
            ],
        },
        "appointment": {
            "id": "a-9",
            "start": "2026-03-10T15:30:00-06:00",
            "service": "cardiology.consult",
            "location": "Main Campus Heart Center",
            "provider": "Dr. Rivera",
        },
        "encounter": None,
        "attributes": {},
    }


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        parse_event(data)
    return str(caught.value)


# --- the happy path -------------------------------------------------------------------


def test_design_example_parses_into_the_core_event() -> None:
    event = parse_event(design_event())

    assert event.id == "evt-7f3a"
    assert event.type is EventType.APPOINTMENT_BOOKED
    assert event.source == "ehr"
    assert event.patient == Patient(
        id="p-1001",
        phone="+15555550101",
        email="ana@example.org",
        language="es",
        timezone="America/Chicago",
        preferred_channel=Channel.SMS,
        caregivers=(
            Caregiver(
                id="c-1",
                relationship="daughter",
                phone="+15555550102",
                email=None,
                language="en",
                receives=("transport", "forms"),
            ),
        ),
    )
    assert event.appointment == Appointment(
        id="a-9",
        start=datetime(2026, 3, 10, 21, 30, tzinfo=UTC),
        service="cardiology.consult",
        location="Main Campus Heart Center",
        provider="Dr. Rivera",
    )
    assert event.encounter is None
    assert event.attributes == {}


def test_timestamps_with_an_offset_are_normalised_to_utc() -> None:
    data = design_event()
    data["occurred_at"] = "2026-03-02T08:00:00-06:00"

    event = parse_event(data)

    assert event.occurred_at == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC
    assert event.appointment is not None
    assert event.appointment.start is not None
    assert event.appointment.start.tzinfo is UTC
    assert event.appointment.start.hour == 21


def test_encounter_timestamps_are_normalised_to_utc() -> None:
    data = make_event_data(
        "patient.discharged",
        encounter={"id": "e-1", "admitted_at": "2026-03-01T09:00:00+01:00", "discharged_at": T0},
    )

    event = parse_event(data)

    assert event.encounter == Encounter(
        id="e-1",
        admitted_at=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        discharged_at=T0,
    )
    assert event.encounter.admitted_at is not None
    assert event.encounter.admitted_at.tzinfo is UTC


# --- timestamps -----------------------------------------------------------------------


def test_naive_occurred_at_is_rejected_naming_the_field() -> None:
    data = design_event()
    data["occurred_at"] = "2026-03-02T14:00:00"

    message = problems_of(data)

    assert message.startswith("event evt-7f3a: ")
    assert "occurred_at: " in message
    assert "offset" in message


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (("patient", "id"), "patient.id"),
        (("patient", "caregivers", 0, "id"), "patient.caregivers[0].id"),
        (("appointment", "id"), "appointment.id"),
        (("attributes", "caregiver_id"), "caregiver_id"),
    ],
)
def test_an_identifier_longer_than_the_store_holds_is_digested_and_one_that_fits_kept(
    where: tuple[str | int, ...], field: str
) -> None:
    data = design_event()
    parent: Any = data
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = "x" * 201

    long = dump_event(parse_event(data))
    parent[where[-1]] = "x" * 200
    fits = dump_event(parse_event(data))

    path = [*where[:-1], where[-1]]
    assert _at(long, path) == bound_id("x" * 201) and len(_at(long, path)) == 200, field
    assert _at(fits, path) == "x" * 200


def _at(data: Any, path: list[str | int]) -> Any:
    for step in path:
        data = data[step]
    return data


def test_a_source_longer_than_the_store_holds_is_refused_as_input() -> None:
    data = design_event()
    data["source"] = "s" * 101

    assert "source" in problems_of(data)


def test_naive_appointment_start_is_rejected_naming_the_field() -> None:
    data = design_event()
    data["appointment"]["start"] = "2026-03-10T15:30:00"

    message = problems_of(data)

    assert "appointment.start: " in message
    assert "occurred_at" not in message


def test_every_bad_field_is_named_not_only_the_first() -> None:
    data = design_event()
    data["occurred_at"] = "2026-03-02T14:00:00"
    data["appointment"]["start"] = "2026-03-10T15:30:00"

    with pytest.raises(InputError) as caught:
        parse_event(data)

    assert caught.value.where == "event evt-7f3a"
    assert [p.partition(":")[0] for p in caught.value.problems] == [
        "occurred_at",
        "appointment.start",
    ]


# --- phone numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["(555) 555-0123", "555-555-0123", "555.555.0123", "+1 555 555 0123", "15555550123"],
)
def test_us_phone_in_national_format_is_normalised_to_e164(written: str) -> None:
    event = parse_event(make_event_data(patient=make_patient(phone=written)))

    assert event.patient.phone == "+15555550123"


def test_international_phone_stays_in_its_own_country() -> None:
    event = parse_event(make_event_data(patient=make_patient(phone="+44 20 7946 0958")))

    assert event.patient.phone == "+442079460958"


def test_national_phone_is_read_in_the_default_region_given() -> None:
    data = make_event_data(patient=make_patient(phone="020 7946 0958"))

    event = parse_event(data, default_region="GB")

    assert event.patient.phone == "+442079460958"


@pytest.mark.parametrize(
    "impossible", ["123", "+1 555 555 01", "not a number", "+1555555012345678"]
)
def test_impossible_phone_is_rejected_naming_patient_phone(impossible: str) -> None:
    message = problems_of(make_event_data(patient=make_patient(phone=impossible)))

    assert "patient.phone: " in message


def test_empty_phone_means_no_phone() -> None:
    event = parse_event(make_event_data(patient=make_patient(phone="")))

    assert event.patient.phone is None


def test_a_patient_block_with_only_the_id_states_nothing_else() -> None:
    event = parse_event(make_event_data(patient={"id": "p-1"}))

    assert event.patient == Patient("p-1")
    assert event.patient.stated() == frozenset()


@pytest.mark.parametrize(
    ("block", "cleared"),
    [
        ({"email": None}, {"email"}),
        ({"phone": ""}, {"phone"}),  # empty is no phone, said explicitly
        ({"caregivers": []}, {"caregivers"}),
        ({"caregivers": None}, {"caregivers"}),
        (
            {"language": None, "timezone": None, "preferred_channel": None},
            {
                "language",
                "timezone",
                "preferred_channel",
            },
        ),
    ],
)
def test_an_explicit_null_is_kept_apart_from_an_absent_field(
    block: dict[str, Any], cleared: set[str]
) -> None:
    event = parse_event(make_event_data(patient={"id": "p-1", "phone": "+15555550101", **block}))

    assert event.patient.cleared == cleared
    assert event.patient.stated() == cleared | ({"phone"} - cleared)


def test_caregiver_phone_is_normalised_to_e164() -> None:
    caregiver = {"id": "c-1", "phone": "(555) 555-0102", "language": "ES"}

    event = parse_event(make_event_data(patient=make_patient(caregivers=[caregiver])))

    assert event.patient.caregivers[0].phone == "+15555550102"
    assert event.patient.caregivers[0].language == "es"


def test_impossible_caregiver_phone_is_rejected_naming_the_caregiver() -> None:
    caregiver = {"id": "c-1", "phone": "123"}

    message = problems_of(make_event_data(patient=make_patient(caregivers=[caregiver])))

    assert "patient.caregivers[0].phone: " in message


# --- time zone and language -----------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Central Time", "../etc/passwd"])
def test_unknown_time_zone_is_rejected_naming_patient_timezone(zone: str) -> None:
    message = problems_of(make_event_data(patient=make_patient(timezone=zone)))

    assert "patient.timezone: " in message
    assert "IANA" in message


@pytest.mark.parametrize(
    ("written", "normalised"), [("ES", "es"), ("es-MX", "es-MX"), ("en", "en")]
)
def test_language_tag_is_normalised(written: str, normalised: str) -> None:
    event = parse_event(make_event_data(patient=make_patient(language=written)))

    assert event.patient.language == normalised


@pytest.mark.parametrize("garbage", ["español", "e", "12", "es_MX", "english language"])
def test_garbage_language_is_rejected_naming_patient_language(garbage: str) -> None:
    message = problems_of(make_event_data(patient=make_patient(language=garbage)))

    assert "patient.language: " in message


# --- event types and their subjects ---------------------------------------------------


def test_unknown_event_type_is_rejected_listing_the_known_types() -> None:
    data = design_event()
    data["type"] = "appointment.exploded"

    message = problems_of(data)

    assert "type: unknown event type" in message
    for known in EventType:
        assert known.value in message


def test_appointment_event_without_an_appointment_is_rejected() -> None:
    data = make_event_data("appointment.cancelled", appointment_id=None)
    assert "appointment" not in data

    message = problems_of(data)

    assert "appointment.cancelled" in message
    assert "'appointment'" in message


def test_admission_without_an_encounter_is_rejected() -> None:
    message = problems_of(make_event_data("patient.admitted"))

    assert "patient.admitted" in message
    assert "'encounter'" in message


def test_discharge_without_an_encounter_is_rejected() -> None:
    message = problems_of(make_event_data("patient.discharged"))

    assert "'encounter'" in message


def test_event_that_needs_no_subject_parses_without_one() -> None:
    event = parse_event(make_event_data("consent.opted_out"))

    assert event.appointment is None
    assert event.encounter is None


# --- unknown fields -------------------------------------------------------------------


def test_unknown_top_level_field_is_kept_in_attributes() -> None:
    data = design_event()
    data["campaign"] = "spring-checkups"

    event = parse_event(data)

    assert event.attributes["campaign"] == "spring-checkups"


def test_unknown_nested_fields_are_kept_under_their_dotted_path() -> None:
    data = design_event()
    data["patient"]["mrn_hint"] = "hint-1"
    data["patient"]["caregivers"][0]["pager"] = {"kind": "pager", "active": False}
    data["appointment"]["room"] = "4B"

    event = parse_event(data)

    assert event.attributes["patient.mrn_hint"] == "hint-1"
    assert event.attributes["patient.caregivers[0].pager"] == {"kind": "pager", "active": False}
    assert event.attributes["appointment.room"] == "4B"


def test_declared_attributes_are_kept_beside_unknown_fields() -> None:
    data = design_event()
    data["attributes"] = {"urgency": "high", "tags": ["a", "b"]}
    data["campaign"] = "spring-checkups"

    event = parse_event(data)

    assert event.attributes == {
        "urgency": "high",
        "tags": ["a", "b"],
        "campaign": "spring-checkups",
    }


# --- no patient data in errors ---------------------------------------------------------


def test_errors_never_echo_the_patients_phone_or_email() -> None:
    bad_phone = "+1 555 555 01"
    bad_email = "ana.at.example.org"
    data = design_event()
    data["patient"]["phone"] = bad_phone
    data["patient"]["email"] = bad_email
    data["patient"]["caregivers"][0]["phone"] = "555 01"
    data["patient"]["caregivers"][0]["email"] = "carer-example.org"

    with pytest.raises(InputError) as caught:
        parse_event(data)

    text = str(caught.value) + repr(caught.value.problems)
    assert "patient.phone: " in text
    assert "patient.email: " in text
    assert "patient.caregivers[0].email: " in text
    for value in (bad_phone, bad_email, "555 01", "carer-example.org", "555"):
        assert value not in text


def test_errors_elsewhere_never_echo_a_valid_phone_or_email() -> None:
    data = design_event()
    data["type"] = "appointment.exploded"
    data["patient"]["preferred_channel"] = "+15555550101"

    with pytest.raises(InputError) as caught:
        parse_event(data)

    text = str(caught.value)
    assert "patient.preferred_channel: " in text
    assert "5555550101" not in text
    assert "ana@example.org" not in text


# --- JSON text ------------------------------------------------------------------------


def test_json_text_parses_like_the_decoded_mapping() -> None:
    text = json.dumps(design_event())

    assert parse_event_json(text) == parse_event(design_event())
    assert parse_event_json(text.encode()) == parse_event(design_event())


@pytest.mark.parametrize("text", ["{not json", "", b"\xff\xfe\xfa", "{'id': 'evt-1'}"])
def test_non_json_is_an_input_error(text: str | bytes) -> None:
    with pytest.raises(InputError, match="not JSON"):
        parse_event_json(text)


def test_json_array_is_an_input_error_asking_for_an_object() -> None:
    with pytest.raises(InputError, match="expected a JSON object"):
        parse_event_json(json.dumps([design_event()]))


# --- dumping --------------------------------------------------------------------------


def test_dumped_event_parses_back_to_an_equal_event() -> None:
    data = design_event()
    data["patient"]["mrn_hint"] = "hint-1"
    data["attributes"] = {"urgency": "high"}
    event = parse_event(data)

    dumped = dump_event(event)

    assert parse_event(dumped) == event
    assert parse_event_json(json.dumps(dumped)) == event


def test_dumped_encounter_event_parses_back_to_an_equal_event() -> None:
    event = parse_event(
        make_event_data(
            "patient.discharged",
            encounter={
                "id": "e-1",
                "admitted_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
                "discharged_at": T0,
                "disposition": "home",
                "service": "orthopedics.knee",
            },
        )
    )

    assert parse_event(dump_event(event)) == event


@pytest.mark.parametrize(
    "block",
    [
        {"id": "p-1"},
        {"id": "p-1", "language": "es"},
        {"id": "p-1", "email": None, "caregivers": []},
        {"id": "p-1", "phone": "+15555550101", "timezone": None},
    ],
)
def test_a_dumped_patient_block_states_what_the_event_stated_and_no_more(
    block: dict[str, Any],
) -> None:
    event = parse_event(make_event_data(patient=block))

    assert dump_event(event)["patient"] == block
    assert parse_event(dump_event(event)) == event


def test_unknown_field_clashing_with_a_declared_attribute_is_rejected_not_overwritten() -> None:
    data = design_event()
    data["attributes"] = {"campaign": "declared", "patient.mrn_hint": "declared-hint"}
    data["campaign"] = "unknown-field"
    data["patient"]["mrn_hint"] = "unknown-hint"

    with pytest.raises(InputError) as caught:
        parse_event(data)

    assert caught.value.problems == (
        "campaign: an unknown field and attributes.campaign would both be kept under "
        "'campaign'; send one of them",
        "patient.mrn_hint: an unknown field and attributes.patient.mrn_hint would both be kept "
        "under 'patient.mrn_hint'; send one of them",
    )
    assert "unknown-field" not in str(caught.value)
