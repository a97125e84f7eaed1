"""Consent per channel and the channels it leaves usable."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.event import Channel
from orchestrator.policies.consent import (
    ConsentRecord,
    consent_decisions,
    contactable,
    may_contact,
    ordered_channels,
    supersedes,
)
from orchestrator.recipients import Contact
from tests.builders import T0, at, make_event

SMS, EMAIL = Channel.SMS, Channel.EMAIL
BOTH = (SMS, EMAIL)


def contact(
    *,
    phone: str | None = "+15555550101",
    email: str | None = "patient@example.org",
    preferred: Channel | None = None,
) -> Contact:
    return Contact(phone, email, "en", "America/Chicago", preferred)


def opted_out(channel: Channel) -> ConsentRecord:
    return ConsentRecord(channel, granted=False, at=at(), source="sms.stop")


def opted_in(channel: Channel) -> ConsentRecord:
    return ConsentRecord(channel, granted=True, at=at(), source="sms.start")


def test_no_consent_record_means_treatment_messages_are_allowed() -> None:
    assert may_contact({}, SMS)


def test_opt_out_of_a_channel_forbids_that_channel() -> None:
    assert not may_contact({SMS: opted_out(SMS)}, SMS)


def test_opt_in_after_opt_out_allows_the_channel_again() -> None:
    assert may_contact({SMS: opted_in(SMS)}, SMS)


def test_opt_out_of_sms_leaves_email_usable() -> None:
    channels, reason = contactable(BOTH, contact(), {SMS: opted_out(SMS)})

    assert channels == [EMAIL]
    assert reason is None


def test_both_channels_are_usable_in_the_messages_order() -> None:
    assert contactable(BOTH, contact(), {}) == ([SMS, EMAIL], None)
    assert contactable((EMAIL, SMS), contact(), {}) == ([EMAIL, SMS], None)


def test_preferred_channel_moves_first() -> None:
    assert ordered_channels(BOTH, contact(preferred=EMAIL)) == [EMAIL, SMS]
    assert contactable(BOTH, contact(preferred=EMAIL), {}) == ([EMAIL, SMS], None)


def test_preferred_channel_not_offered_by_the_message_changes_nothing() -> None:
    assert ordered_channels((SMS,), contact(preferred=EMAIL)) == [SMS]


def test_channel_without_an_address_is_skipped() -> None:
    assert contactable(BOTH, contact(phone=None), {}) == ([EMAIL], None)


def test_no_address_for_any_channel_is_no_contact_point() -> None:
    assert contactable(BOTH, contact(phone=None, email=None), {}) == ([], "no_contact_point")


def test_opted_out_of_every_usable_channel_is_consent() -> None:
    consent = {SMS: opted_out(SMS), EMAIL: opted_out(EMAIL)}

    assert contactable(BOTH, contact(), consent) == ([], "consent")


def test_opted_out_of_the_only_channel_with_an_address_is_consent() -> None:
    assert contactable(BOTH, contact(email=None), {SMS: opted_out(SMS)}) == ([], "consent")


def test_opt_out_of_a_channel_the_message_does_not_use_is_not_the_reason() -> None:
    assert contactable((EMAIL,), contact(email=None), {SMS: opted_out(SMS)}) == (
        [],
        "no_contact_point",
    )


def test_an_opt_out_naming_a_channel_decides_for_that_channel_of_the_caregiver_only() -> None:
    event = make_event("consent.opted_out", attributes={"channel": "sms", "caregiver_id": "cg-1"})

    decided = consent_decisions(event)

    assert [(r, c.channel, c.granted) for r, c in decided] == [
        ("caregiver:cg-1", Channel.SMS, False)
    ]


def test_an_opt_in_naming_no_channel_decides_for_every_channel() -> None:
    decided = consent_decisions(make_event("consent.opted_in", attributes={}))

    assert {c.channel for _, c in decided} == set(Channel)
    assert all(r == "patient" and c.granted for r, c in decided)


def test_an_event_that_is_not_about_consent_decides_nothing() -> None:
    assert consent_decisions(make_event("appointment.booked")) == ()


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(6)), st.lists(st.booleans(), min_size=6, max_size=6))
def test_the_latest_consent_decision_wins_whatever_order_the_events_arrive_in(
    order: list[int], grants: list[bool]
) -> None:
    events = [
        make_event(
            "consent.opted_in" if grants[i] else "consent.opted_out",
            occurred_at=T0 + timedelta(hours=i // 2),  # pairs share an instant
            attributes={"channel": "sms"},
        )
        for i in range(6)
    ]
    book: dict[Channel, ConsentRecord] = {}
    for i in order:
        for _, consent in consent_decisions(events[i]):
            previous = book.get(consent.channel)
            if supersedes(consent, previous.at if previous else None):
                book[consent.channel] = consent

    latest = [i for i in order if i // 2 == 2]  # the last instant; ties: the last to arrive
    assert book[Channel.SMS].granted is grants[latest[-1]]
