"""HL7 v2 to canonical events: the real samples, the quirks of real feeds, clear errors."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.hl7_message import Hl7Error, Hl7Message
from connectors.hl7v2 import Hl7Config, split_messages, to_event
from orchestrator.event import Event
from orchestrator.event_schema import dump_event, parse_event
from tests.connectors.hl7_samples import SAMPLES, sample, with_field, with_segments

CONFIG = Hl7Config()
SIU = sample("SIU-S12-01.hl7")
ADT = sample("ADT-A01-01.hl7")

# The samples' PID carries no SMS-capable number or email: those stay unknown, not null.
PATIENT = {"id": "PATID1234", "language": "ar"}
APPOINTMENT = {
    "id": "36996",
    "start": "2021-09-24T07:15:00+00:00",
    "service": "76164006",
    "location": "GH Clinic 055 Room01",
    "provider": "Robert GE",
}
ENCOUNTER = {
    "id": "40007716",
    "admitted_at": "2015-02-08T10:24:19+00:00",
    "discharged_at": None,
    "disposition": "Admitted as Inpatient",
    "service": "SUR",
}


def _event(
    name: str, control: str, trigger: str, kind: str, type_: str, occurred: str
) -> dict[str, Any]:
    return {
        "id": f"hl7:{kind}App@GHHSFacility:{control}:{trigger}".replace("SIUApp", "SCHApp"),
        "type": type_,
        "occurred_at": occurred,
        "source": "hl7v2",
        "patient": PATIENT,
        "attributes": {
            "hl7": {
                "message_type": f"{kind}^{trigger}",
                "control_id": control,
                "facility": "GHHSFacility",
            }
        },
    }


EXPECTED = {
    "SIU-S12-01.hl7": {
        **_event("", "MSG00012", "S12", "SIU", "appointment.booked", "2021-09-14T09:05:00+00:00"),
        "appointment": APPOINTMENT,
        "encounter": None,
    },
    "SIU-S13-01.hl7": {
        **_event(
            "", "MSG00013", "S13", "SIU", "appointment.rescheduled", "2021-09-20T09:11:00+00:00"
        ),
        "appointment": APPOINTMENT,
        "encounter": None,
    },
    "SIU-S15-01.hl7": {
        **_event(
            "", "MSG00015", "S15", "SIU", "appointment.cancelled", "2021-09-23T09:11:00+00:00"
        ),
        "appointment": APPOINTMENT,
        "encounter": None,
    },
    # EVN-6 (event occurred) is the time; the admission itself is in the encounter.
    "ADT-A01-01.hl7": {
        **_event(
            "", "MSG00001", "A01", "ADT", "patient.admitted", "2021-08-17T13:19:43.400000+00:00"
        ),
        "appointment": None,
        "encounter": ENCOUNTER,
    },
    # EVN-1 says A01 in the source; MSH-9 (ADT^A03) decides.
    "ADT-A03-01.hl7": {
        **_event(
            "", "MSG00001", "A03", "ADT", "patient.discharged", "2021-08-17T13:19:43.400000+00:00"
        ),
        "appointment": None,
        "encounter": {**ENCOUNTER, "discharged_at": "2015-02-09T10:24:19+00:00"},
    },
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(EXPECTED) == SAMPLES


@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_converts_to_its_expected_event(name: str) -> None:
    assert dump_event(to_event(sample(name), CONFIG)) == EXPECTED[name]


def _schema_agrees(event: Event) -> None:
    """The mapper builds core events directly: the canonical schema must take them as they are."""
    assert parse_event(dump_event(event)) == event


@pytest.mark.parametrize("name", SAMPLES)
def test_the_canonical_schema_takes_each_event_unchanged(name: str) -> None:
    _schema_agrees(to_event(sample(name), CONFIG))


def test_a_control_id_reused_for_another_message_type_is_not_a_duplicate() -> None:
    # Both ADT samples carry MSG00001: the discharge must not be taken for a resend.
    admitted = to_event(sample("ADT-A01-01.hl7"), CONFIG)
    discharged = to_event(sample("ADT-A03-01.hl7"), CONFIG)
    assert admitted.id != discharged.id


def test_two_applications_at_one_facility_do_not_share_event_ids() -> None:
    # A RIS and a PAS at one facility both count control ids from the same start.
    ris = to_event(with_field(sample("SIU-S12-01.hl7"), "MSH", 3, "RIS"), CONFIG)
    pas = to_event(with_field(sample("SIU-S12-01.hl7"), "MSH", 3, "PAS"), CONFIG)
    assert ris.id != pas.id


@pytest.mark.parametrize(
    ("field", "one", "other"),
    [(10, "X/1", "X 1"), (10, "X_1", "X 1"), (4, "A:B", "A@B"), (3, "A@B", "A_B")],
)
def test_ids_that_differ_only_in_unsafe_characters_stay_distinct(
    field: int, one: str, other: str
) -> None:
    first = to_event(with_field(SIU, "MSH", field, one), CONFIG)
    second = to_event(with_field(SIU, "MSH", field, other), CONFIG)
    assert first.id != second.id
    _schema_agrees(first)


def test_a_long_event_id_keeps_a_readable_prefix_and_a_digest() -> None:
    long_control = "C" * 300
    event = to_event(with_field(SIU, "MSH", 10, long_control), CONFIG)
    other = to_event(with_field(SIU, "MSH", 10, long_control + "D"), CONFIG)
    assert len(event.id) <= 200
    assert event.id.startswith("hl7:SCHApp@GHHSFacility:CCC")
    assert re.fullmatch(r".*~[0-9a-f]{64}", event.id)
    assert event.id != other.id


def test_a_resent_message_has_the_same_event_id() -> None:
    again = with_field(SIU, "MSH", 7, "202109141130+0215")  # resent a little later
    assert to_event(again, CONFIG).id == to_event(SIU, CONFIG).id


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda raw: raw.replace(b"\n", b"\r"), id="cr"),
        pytest.param(lambda raw: raw.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(lambda raw: b"\xef\xbb\xbf" + raw, id="bom"),
        pytest.param(lambda raw: raw + b"\r\n\r\n   \r\n", id="trailing-blank-segments"),
        pytest.param(lambda raw: raw + b"\nZXT|1|custom^data~more|\nZPI|x", id="z-segments"),
    ],
)
def test_real_feed_quirks_change_nothing(variant: Any) -> None:
    assert dump_event(to_event(variant(SIU), CONFIG)) == EXPECTED["SIU-S12-01.hl7"]


def test_text_that_is_not_utf8_is_read_as_windows_1252() -> None:
    raw = with_field(SIU, "AIL", 3, "055^Room01^^Cl\xednica^^^".encode("cp1252").decode("latin-1"))
    event = to_event(raw.decode("utf-8").encode("latin-1"), CONFIG)
    assert event.appointment is not None
    assert event.appointment.location == "Clínica 055 Room01"


@pytest.mark.parametrize(
    ("kind", "source", "expected"),
    [
        ("SIU^S14^SIU_S12", SIU, "appointment.booked"),
        ("SIU^S17^SIU_S12", SIU, "appointment.cancelled"),
        ("SIU^S26^SIU_S12", SIU, "appointment.no_show"),
        ("ADT^A04^ADT_A01", ADT, "patient.updated"),
        ("ADT^A08^ADT_A01", ADT, "patient.updated"),
    ],
)
def test_every_supported_trigger_maps_to_its_event_type(
    kind: str, source: bytes, expected: str
) -> None:
    event = to_event(with_field(source, "MSH", 9, kind), CONFIG)
    assert event.type.value == expected
    assert event.id.endswith(":" + kind.split("^")[1])


@pytest.mark.parametrize(
    ("trigger", "cancels"), [("A11", "patient.admitted"), ("A13", "patient.discharged")]
)
def test_admission_and_discharge_cancellations_say_what_they_cancel(
    trigger: str, cancels: str
) -> None:
    event = to_event(with_field(ADT, "MSH", 9, f"ADT^{trigger}^ADT_A09"), CONFIG)
    assert event.type.value == "patient.updated"
    assert event.attributes["cancels"] == cancels
    assert event.attributes["encounter_id"] == "40007716"


# -- patient -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "expected"),
    [("test1", "PATID1234"), ("2.16.1", "PATID1234"), ("USSSA", "123456789")],
)
def test_the_patient_id_is_the_identifier_of_the_configured_authority(
    authority: str, expected: str
) -> None:
    event = to_event(SIU, Hl7Config(assigning_authority=authority))
    assert event.patient.id == expected


def test_no_identifier_of_the_configured_authority_is_an_error_at_pid_3() -> None:
    with pytest.raises(Hl7Error) as caught:
        to_event(SIU, Hl7Config(assigning_authority="OTHER"))
    assert str(caught.value.location) == "PID-3.4"
    assert caught.value.code == "101"


def test_without_an_authority_the_first_mr_identifier_is_taken() -> None:
    raw = with_field(SIU, "PID", 3, "999^^^SSA^SS~P-77^^^HOSP^MR")
    assert to_event(raw, CONFIG).patient.id == "P-77"


@pytest.mark.parametrize(
    ("pid13", "pid14", "phone", "email"),
    [
        ("(555)555-0101", "", "+15555550101", None),  # XTN-1, the pre-2.3 shape
        ("^PRN^CP^^1^555^5550102", "", "+15555550102", None),  # structured
        ("^^^^^^^^^^^5555550103", "", "+15555550103", None),  # XTN-12 unformatted
        # A mobile beats a landline, a fax is never texted, email from XTN-4.
        (
            "5555550105^PRN^PH~5555550106^PRN^FX~^PRN^CP^^1^555^5550102~^NET^Internet^ana@example.org",
            "",
            "+15555550102",
            "ana@example.org",
        ),
        ("ana@example.org", "", None, "ana@example.org"),  # an address in XTN-1
        ("", "5555550107^WPN^PH", "+15555550107", None),  # business number, PID-14
        ("12^^CP", "", None, None),  # too short to be a number anywhere: dropped
    ],
)
def test_phone_and_email_come_from_the_shapes_pid_13_and_14_take(
    pid13: str, pid14: str, phone: str | None, email: str | None
) -> None:
    raw = with_field(with_field(SIU, "PID", 13, pid13), "PID", 14, pid14)
    event = to_event(raw, CONFIG)
    assert (event.patient.phone, event.patient.email) == (phone, email)
    _schema_agrees(event)


@pytest.mark.parametrize(
    ("pid15", "language"),
    [
        ("spa^Spanish^ISO6392", "es"),
        ("en^English", "en"),
        ("es-MX", "es"),
        ("^Deutsch^^ger", "de"),
        ("zz9", None),
    ],
)
def test_language_comes_from_pid_15(pid15: str, language: str | None) -> None:
    event = to_event(with_field(SIU, "PID", 15, pid15), CONFIG)
    assert event.patient.language == language
    _schema_agrees(event)


def test_a_pid_without_contact_points_leaves_them_unknown_not_cleared() -> None:
    raw = with_field(with_field(with_field(SIU, "PID", 13, ""), "PID", 14, ""), "PID", 15, "")
    event = to_event(raw, CONFIG)
    assert event.patient.stated() == frozenset()
    assert dump_event(event)["patient"] == {"id": "PATID1234"}
    _schema_agrees(event)


@pytest.mark.parametrize(
    ("pid13", "pid14", "pid15", "cleared"),
    [
        ('""', "", "", {"phone", "email"}),
        ('""', '""', '""', {"phone", "email", "language"}),
        ("", "", '""', {"language"}),
        # A business number stays: the home numbers alone were deleted.
        ('""', "5555550107^WPN^PH", "", set()),
    ],
)
def test_hl7_explicit_null_clears_the_fields_it_covers(
    pid13: str, pid14: str, pid15: str, cleared: set[str]
) -> None:
    raw = with_field(
        with_field(with_field(SIU, "PID", 13, pid13), "PID", 14, pid14), "PID", 15, pid15
    )
    event = to_event(raw, CONFIG)
    assert event.patient.cleared == cleared
    _schema_agrees(event)


def test_services_are_mapped_to_flow_service_names() -> None:
    config = Hl7Config(services={"76164006": "gastro.colonoscopy"})
    event = to_event(SIU, config)
    assert event.appointment is not None and event.appointment.service == "gastro.colonoscopy"


# -- times ---------------------------------------------------------------------------


def test_without_tq1_the_start_comes_from_ais_then_sch_11() -> None:
    no_tq1 = with_segments(SIU, drop=("TQ1",))
    start = to_event(no_tq1, CONFIG).appointment
    assert start is not None and start.start == datetime(2021, 9, 24, 7, 15, tzinfo=UTC)
    only_sch = with_segments(SIU, drop=("TQ1", "AIS"))
    appointment = to_event(only_sch, CONFIG).appointment
    # SCH-11.4 of the sample: 202010011126+0215
    assert appointment is not None and appointment.start == datetime(2020, 10, 1, 9, 11, tzinfo=UTC)


@pytest.mark.parametrize("trigger", ["S12", "S13", "S14"])
def test_a_booking_with_no_time_at_all_is_an_error_naming_the_missing_start(trigger: str) -> None:
    raw = with_field(
        with_field(with_segments(SIU, drop=("TQ1", "AIS")), "SCH", 11, ""),
        "MSH",
        9,
        f"SIU^{trigger}^SIU_S12",
    )

    with pytest.raises(Hl7Error) as caught:
        to_event(raw, CONFIG)

    assert (str(caught.value.location), caught.value.code) == ("SCH-11.4", "101")
    assert "TQ1-7, AIS-4 and SCH-11.4" in caught.value.problem
    assert not caught.value.reject


@pytest.mark.parametrize("trigger", ["S15", "S17", "S26"])
def test_a_cancellation_or_no_show_with_no_time_is_taken_by_its_appointment_id(
    trigger: str,
) -> None:
    raw = with_field(
        with_field(with_segments(SIU, drop=("TQ1", "AIS")), "SCH", 11, ""),
        "MSH",
        9,
        f"SIU^{trigger}^SIU_S12",
    )

    appointment = to_event(raw, CONFIG).appointment

    assert appointment is not None and appointment.start is None and appointment.id


def test_times_without_an_offset_need_the_facility_time_zone() -> None:
    raw = with_field(with_field(SIU, "MSH", 7, "20260302090000"), "TQ1", 7, "20260310093000")
    with pytest.raises(Hl7Error) as caught:
        to_event(raw, CONFIG)
    assert str(caught.value.location) == "MSH-7"
    assert "ORCHESTRATOR_HL7_TIMEZONE" in caught.value.problem
    event = to_event(raw, Hl7Config(timezone="America/Chicago"))
    assert event.occurred_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # CST, UTC-6
    assert event.appointment is not None
    assert event.appointment.start == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # CDT, UTC-5


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "where", "code", "reject"),
    [
        (with_field(SIU, "MSH", 9, "ORU^R01^ORU_R01"), "MSH-9.1", "200", True),
        (with_field(SIU, "MSH", 9, "SIU^S99"), "MSH-9.2", "201", True),
        (with_field(SIU, "MSH", 10, ""), "MSH-10", "101", False),
        (with_field(SIU, "TQ1", 7, "2021-09-24"), "TQ1-7", "102", False),
        (with_field(with_field(SIU, "SCH", 1, ""), "SCH", 2, ""), "SCH-2", "101", False),
        (with_segments(SIU, drop=("PID",)), "PID", "101", False),
        (with_field(with_field(ADT, "PV1", 19, ""), "PV1", 50, ""), "PV1-19", "101", False),
        (with_field(SIU, "PID", 3, ""), "PID-3.1", "101", False),
        (b"PID|1||x\r", "MSH", "100", True),
        (b"MSHabc", "MSH", "100", True),
    ],
)
def test_what_cannot_be_used_names_segment_and_field(
    raw: bytes, where: str, code: str, reject: bool
) -> None:
    with pytest.raises(Hl7Error) as caught:
        to_event(raw, CONFIG)
    assert (str(caught.value.location), caught.value.code, caught.value.reject) == (
        where,
        code,
        reject,
    )


@pytest.mark.parametrize(
    "stamp",
    [
        "99991231235959-0500",  # an open-ended placeholder past datetime's range in UTC
        "00010101000000+0100",
        "20240101120000+2400",  # no offset reaches 24 hours
        "20240101120000+0099",  # nor 60 minutes
    ],
)
def test_a_time_that_cannot_be_had_in_utc_is_a_data_type_error(stamp: str) -> None:
    with pytest.raises(Hl7Error) as caught:
        to_event(with_field(SIU, "MSH", 7, stamp), CONFIG)
    assert (str(caught.value.location), caught.value.code) == ("MSH-7", "102")


def test_a_placeholder_time_in_the_facility_zone_is_a_data_type_error() -> None:
    raw = with_field(SIU, "TQ1", 7, "99991231235959")
    with pytest.raises(Hl7Error) as caught:
        to_event(raw, Hl7Config(timezone="America/Chicago"))
    assert (str(caught.value.location), caught.value.code) == ("TQ1-7", "102")


def test_the_largest_offsets_are_still_read() -> None:
    event = to_event(with_field(SIU, "MSH", 7, "20240101120000-2359"), CONFIG)
    assert event.occurred_at == datetime(2024, 1, 2, 11, 59, tzinfo=UTC)


def test_a_discharge_without_its_time_is_an_error_at_pv1_45() -> None:
    with pytest.raises(Hl7Error) as caught:
        to_event(with_field(sample("ADT-A03-01.hl7"), "PV1", 45, ""), CONFIG)
    assert str(caught.value.location) == "PV1-45"


def test_error_messages_carry_no_value_from_the_message() -> None:
    raw = with_field(SIU, "TQ1", 7, "SECRET-VALUE")
    with pytest.raises(Hl7Error) as caught:
        to_event(raw, CONFIG)
    assert "SECRET" not in str(caught.value)


# -- files ---------------------------------------------------------------------------


def test_a_file_splits_into_messages_at_each_msh_with_their_lines() -> None:
    text = b"\n".join(sample(n) for n in SAMPLES)
    found = list(split_messages(b"FHS|^~\\&\nBHS|^~\\&\n" + text + b"\nBTS|5\nFTS|1\n"))
    assert len(found) == 5
    assert [to_event(m, CONFIG).id for _, m in found] == [
        dump_event(to_event(sample(n), CONFIG))["id"] for n in SAMPLES
    ]
    assert found[0][0] == 3  # after the two envelope lines


# -- the reader against the hl7 package ---------------------------------------------------


def _reference(text: str, segment: str, number: int, field: int, component: int) -> str | None:
    try:
        value = hl7.parse(text).extract_field(segment, number, field, 1, component, 1)
    except (IndexError, KeyError):
        return None
    return str(value).strip()


@pytest.mark.parametrize("name", SAMPLES)
def test_the_reader_reads_every_field_as_the_hl7_package_does(name: str) -> None:
    text = sample(name).decode().replace("\n", "\r")
    message = Hl7Message.parse(text)
    tree = hl7.parse(text)
    compared = 0
    for segment in message.segments:
        if segment.id == "MSH":
            continue
        for field in range(1, len(segment.fields)):
            for component in range(1, 4):
                try:
                    expected = tree.segments(segment.id)(segment.sequence).extract_field(
                        segment.sequence, field, 1, component, 1
                    )
                except IndexError:
                    continue
                assert segment.get(field, component) == str(expected).strip(), (
                    f"{segment.id}-{field}.{component}"
                )
                compared += 1
    assert compared > 200


_TEXT = st.text(alphabet="AB1 ^~&.", max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.lists(_TEXT, min_size=1, max_size=6),
    field=st.integers(1, 7),
    component=st.integers(1, 3),
)
def test_generated_fields_read_as_the_hl7_package_reads_them(
    fields: list[str], field: int, component: int
) -> None:
    text = "MSH|^~\\&|APP|FAC|||20260101||SIU^S12|1|P|2.5\rZZZ|" + "|".join(fields)
    expected = _reference(text, "ZZZ", 1, field, component)
    if expected is None:
        return
    segment = Hl7Message.parse(text).first("ZZZ")
    assert segment is not None
    assert segment.get(field, component) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b\\T\\c", "a^b&c"),
        ("a\\R\\b\\E\\c", "a~b\\c"),
        ("Cl\\XC3AD\\nica", "Clínica"),
        ("bold \\H\\text\\N\\", "bold text"),
        ("open \\F", "open \\F"),
    ],
)
def test_escape_sequences_are_decoded(raw: str, expected: str) -> None:
    text = f"MSH|^~\\&|APP|FAC|||20260101||SIU^S12|1|P|2.5\rZZZ|{raw}"
    segment = Hl7Message.parse(text).first("ZZZ")
    assert segment is not None and segment.get(1) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(lambda t: ("MSH|^~\\&|" + t).encode()))
def test_arbitrary_bytes_give_an_event_or_an_hl7_error_never_a_crash(raw: bytes) -> None:
    with contextlib.suppress(Hl7Error):
        _schema_agrees(to_event(raw, CONFIG))
