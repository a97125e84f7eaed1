"""Patient data from partial updates: field by field, the newest fact winning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.event import PATIENT_FIELDS, Caregiver, Channel, Patient, PatientField
from orchestrator.patient_merge import KnownPatient, Stamp, merge_patient
from tests.builders import T0, at

FULL = Patient(
    "p-1",
    phone="+15555550101",
    email="patient@example.org",
    language="es",
    timezone="America/Chicago",
    preferred_channel=Channel.SMS,
    caregivers=(Caregiver("c-1", phone="+15555550102", receives=("transport",)),),
)


def fold(*facts: tuple[Patient, Stamp]) -> KnownPatient:
    known: KnownPatient | None = None
    for fact, stamp in facts:
        known = merge_patient(known, fact, stamp)
    assert known is not None
    return known


def test_a_block_with_only_the_id_keeps_everything_known() -> None:
    known = fold((FULL, Stamp(T0, "evt-1")), (Patient("p-1"), Stamp(at(hours=1), "evt-2")))
    assert known.patient == FULL
    assert known.seen_at == at(hours=1)


def test_a_field_left_out_keeps_its_value_and_a_field_given_replaces_it() -> None:
    known = fold(
        (FULL, Stamp(T0, "evt-1")),
        (Patient("p-1", phone="+15555550103"), Stamp(at(hours=1), "evt-2")),
    )
    assert (known.patient.phone, known.patient.email) == ("+15555550103", FULL.email)


def test_an_explicit_null_clears_the_field() -> None:
    known = fold(
        (FULL, Stamp(T0, "evt-1")),
        (Patient("p-1", cleared=frozenset({"email", "caregivers"})), Stamp(at(hours=1), "evt-2")),
    )
    assert (known.patient.email, known.patient.caregivers) == (None, ())
    assert known.patient.phone == FULL.phone
    # What is known holds values only: the clearing is the fact's, not the patient's.
    assert known.patient.cleared == frozenset()


def test_an_older_fact_arriving_later_does_not_overwrite_a_newer_field() -> None:
    known = fold(
        (Patient("p-1", phone="+15555550103"), Stamp(at(hours=2), "evt-2")),
        (FULL, Stamp(at(hours=1), "evt-1")),
    )
    # The older fact still fills what the newer one left out.
    assert (known.patient.phone, known.patient.language) == ("+15555550103", "es")
    assert known.seen_at == at(hours=2)


def test_between_facts_of_the_same_instant_the_greater_event_id_wins() -> None:
    a = (Patient("p-1", language="en"), Stamp(T0, "evt-a"))
    b = (Patient("p-1", language="es"), Stamp(T0, "evt-b"))
    assert fold(a, b).patient.language == fold(b, a).patient.language == "es"


def test_the_same_fact_twice_changes_nothing_the_second_time() -> None:
    once = fold((FULL, Stamp(T0, "evt-1")))
    assert merge_patient(once, FULL, Stamp(T0, "evt-1")) is once


def test_caregivers_are_one_field_replaced_whole() -> None:
    other = Caregiver("c-2", email="carer@example.org", receives=("forms",))
    known = fold(
        (FULL, Stamp(T0, "evt-1")),
        (Patient("p-1", caregivers=(other,)), Stamp(at(hours=1), "evt-2")),
    )
    assert known.patient.caregivers == (other,)


def test_a_fact_about_another_patient_is_refused() -> None:
    with pytest.raises(ValueError, match="another patient"):
        merge_patient(fold((FULL, Stamp(T0, "evt-1"))), Patient("p-2"), Stamp(T0, "evt-2"))


# -- any order, the same patient ----------------------------------------------------

_VALUES: dict[PatientField, st.SearchStrategy[object]] = {
    "phone": st.sampled_from(["+15555550101", "+15555550102", "+15555550103"]),
    "email": st.sampled_from(["a@example.org", "b@example.org"]),
    "language": st.sampled_from(["en", "es", "vi"]),
    "timezone": st.sampled_from(["America/Chicago", "America/Denver"]),
    "preferred_channel": st.sampled_from(list(Channel)),
    "caregivers": st.sampled_from(
        [(Caregiver("c-1", receives=("transport",)),), (Caregiver("c-2"), Caregiver("c-3"))]
    ),
}


@st.composite
def partial_patient(draw: st.DrawFn) -> Patient:
    """A block that states some fields (a value or an explicit null) and leaves the rest out."""
    values: dict[str, object] = {}
    cleared: set[PatientField] = set()
    for name in PATIENT_FIELDS:
        kind = draw(st.sampled_from(["absent", "null", "value"]))
        if kind == "null":
            cleared.add(name)
        elif kind == "value":
            values[name] = draw(_VALUES[name])
    return Patient("p-1", cleared=frozenset(cleared), **values)  # type: ignore[arg-type]


@st.composite
def updates(draw: st.DrawFn) -> list[tuple[Patient, Stamp]]:
    """Partial updates with distinct event ids, some of them at the same instant."""
    count = draw(st.integers(min_value=1, max_value=6))
    hours = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    return [
        (draw(partial_patient()), Stamp(T0 + timedelta(hours=h), f"evt-{i}"))
        for i, h in enumerate(hours)
    ]


@settings(max_examples=100, deadline=None)
@given(data=st.data(), facts=updates())
def test_any_order_of_the_same_partial_updates_ends_in_the_same_patient(
    data: st.DataObject, facts: list[tuple[Patient, Stamp]]
) -> None:
    shuffled = data.draw(st.permutations(facts))
    assert fold(*shuffled) == fold(*sorted(facts, key=lambda f: f[1]))


@settings(max_examples=100, deadline=None)
@given(facts=updates())
def test_each_field_holds_the_newest_fact_that_states_it(
    facts: list[tuple[Patient, Stamp]],
) -> None:
    known = fold(*facts)
    for name in PATIENT_FIELDS:
        stating = [(stamp, fact) for fact, stamp in facts if name in fact.stated()]
        expected = (
            getattr(max(stating, key=lambda s: s[0])[1], name)
            if stating
            else getattr(Patient("p-1"), name)
        )
        assert getattr(known.patient, name) == expected
