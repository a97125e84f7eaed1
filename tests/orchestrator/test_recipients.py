"""Who receives a scheduled message: contact point, language and time zone."""

from __future__ import annotations

from orchestrator.event import Channel
from orchestrator.journey import Recipient
from orchestrator.recipients import Contact, choose_language, contact_for
from tests.builders import make_event, make_flow, make_patient

FLOW = make_flow()  # languages en, es; default en
CAREGIVER = {
    "id": "c-1",
    "relationship": "daughter",
    "phone": "+15555550102",
    "email": "daughter@example.org",
    "language": "es",
    "receives": ["transport"],
}


def test_patient_contact_is_the_patients_own() -> None:
    patient = make_event(patient=make_patient(language="es", preferred_channel="sms")).patient

    contact = contact_for(patient, Recipient("p-1"))

    assert contact == Contact(
        "+15555550101", "patient@example.org", "es", "America/Chicago", Channel.SMS
    )
    assert contact.address(Channel.SMS) == "+15555550101"
    assert contact.address(Channel.EMAIL) == "patient@example.org"


def test_caregiver_contact_uses_the_caregivers_phone_and_language() -> None:
    patient = make_event(
        patient=make_patient(language="en", caregivers=[CAREGIVER], preferred_channel="email")
    ).patient

    contact = contact_for(patient, Recipient("p-1", "c-1"))

    assert contact is not None
    assert contact.phone == "+15555550102"
    assert contact.email == "daughter@example.org"
    assert contact.language == "es"


def test_caregiver_contact_uses_the_patients_time_zone() -> None:
    patient = make_event(
        patient=make_patient(timezone="America/Denver", caregivers=[CAREGIVER])
    ).patient

    contact = contact_for(patient, Recipient("p-1", "c-1"))

    assert contact is not None
    assert contact.timezone == "America/Denver"


def test_caregiver_contact_does_not_inherit_the_patients_preferred_channel() -> None:
    patient = make_event(
        patient=make_patient(preferred_channel="email", caregivers=[CAREGIVER])
    ).patient

    contact = contact_for(patient, Recipient("p-1", "c-1"))

    assert contact is not None
    assert contact.preferred_channel is None


def test_caregiver_no_longer_listed_has_no_contact() -> None:
    patient = make_event(patient=make_patient(caregivers=[CAREGIVER])).patient

    assert contact_for(patient, Recipient("p-1", "c-9")) is None


def test_caregiver_of_a_patient_without_caregivers_has_no_contact() -> None:
    patient = make_event().patient

    assert contact_for(patient, Recipient("p-1", "c-1")) is None


def test_language_the_flow_offers_is_used_as_is() -> None:
    assert choose_language("es", FLOW) == ("es", False)


def test_regional_language_is_served_by_its_primary_language_without_fallback() -> None:
    assert choose_language("es-MX", FLOW) == ("es", False)


def test_regional_language_the_flow_offers_exactly_is_used_as_is() -> None:
    flow = make_flow(languages=["en", "es", "es-MX"])

    assert choose_language("es-MX", flow) == ("es-MX", False)


def test_language_the_flow_lacks_falls_back_to_the_default_with_the_flag_set() -> None:
    assert choose_language("fr", FLOW) == ("en", True)


def test_fallback_goes_to_the_flows_default_language() -> None:
    flow = make_flow(languages=["en", "es"], default_language="es")

    assert choose_language("fr", flow) == ("es", True)


def test_no_language_gets_the_default_without_the_fallback_flag() -> None:
    assert choose_language(None, FLOW) == ("en", False)
