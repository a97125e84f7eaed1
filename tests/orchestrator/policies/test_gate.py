"""The send-time gate: every policy, in order, for one due message."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.event import Channel
from orchestrator.flows.timing import Anchor
from orchestrator.journey import Recipient, ScheduledMessage
from orchestrator.policies.consent import ConsentRecord
from orchestrator.policies.gate import Defer, Expire, Send, SendContext, Suppress, decide
from orchestrator.recipients import Contact, contact_for
from tests.builders import at, make_event, make_flow, make_patient

SMS, EMAIL = Channel.SMS, Channel.EMAIL
CHICAGO = ZoneInfo("America/Chicago")
FLOW = make_flow()
CAPPED = make_flow(frequency_caps={"sms": {"limit": 3, "per": "24h"}})
CAPPED_BOTH = make_flow(
    frequency_caps={"sms": {"limit": 3, "per": "24h"}, "email": {"limit": 1, "per": "24h"}}
)

# at() is Monday 2026-03-02 08:00 in Chicago.
MORNING = at(hours=2)  # 10:00 local
NIGHT = at(hours=14)  # 22:00 local
NEXT_MORNING = at(days=1)  # Tuesday 08:00 local


def message(**overrides: Any) -> ScheduledMessage:
    """A due reminder to the patient by SMS, then email; no expiry unless given."""
    values: dict[str, Any] = {
        "key": "p-1/test-flow/ep-1/reminder_24h",
        "flow_id": FLOW.id,
        "flow_version": FLOW.version,
        "episode_id": "ep-1",
        "stage_id": "booked",
        "message_id": "reminder_24h",
        "template": "reminder",
        "channels": (SMS, EMAIL),
        "recipient": Recipient("p-1"),
        "due_at": at(),
        "expires_at": None,
        "anchor": Anchor.APPOINTMENT_START,
        "created_by": "evt-1",
        "timezone": "America/Chicago",
    }
    values.update(overrides)
    return ScheduledMessage(**values)


def contact(
    *,
    phone: str | None = "+15555550101",
    email: str | None = "patient@example.org",
    language: str | None = "en",
    timezone: str | None = "America/Chicago",
) -> Contact:
    return Contact(phone, email, language, timezone)


def opted_out(*channels: Channel) -> dict[Channel, ConsentRecord]:
    return {c: ConsentRecord(c, granted=False, at=at(days=-1), source="sms.stop") for c in channels}


# --- staleness first ------------------------------------------------------------------


def test_message_at_its_expiry_is_expired_as_stale() -> None:
    verdict = decide(message(expires_at=MORNING), FLOW, SendContext(contact()), MORNING)

    assert verdict == Expire("stale")


def test_stale_message_is_expired_even_if_the_recipient_opted_out() -> None:
    context = SendContext(contact(), consent=opted_out(SMS, EMAIL))

    verdict = decide(message(expires_at=at(hours=1)), FLOW, context, MORNING)

    assert verdict == Expire("stale")


def test_stale_message_is_expired_even_in_quiet_hours() -> None:
    verdict = decide(message(expires_at=at(hours=13)), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Expire("stale")


def test_message_without_an_expiry_is_stale_a_day_after_it_was_due() -> None:
    due = message(due_at=MORNING)

    assert decide(due, FLOW, SendContext(contact()), at(days=1, hours=2)) == Expire("stale")
    assert decide(due, FLOW, SendContext(contact()), at(days=1, hours=1, minutes=59)) == Send(
        SMS, "en", False
    )


def test_message_due_eight_days_ago_is_expired_as_stale() -> None:
    assert decide(message(), FLOW, SendContext(contact()), at(days=8)) == Expire("stale")


def test_the_default_limit_is_the_callers() -> None:
    hour = timedelta(hours=1)

    assert decide(message(), FLOW, SendContext(contact()), MORNING, stale_after=hour) == Expire(
        "stale"
    )
    assert decide(message(), FLOW, SendContext(contact()), MORNING, stale_after=3 * hour) == Send(
        SMS, "en", False
    )


def test_the_flows_expiry_wins_over_the_default_limit_either_way() -> None:
    later = message(expires_at=at(days=3))
    sooner = message(expires_at=at(hours=1))

    assert decide(later, FLOW, SendContext(contact()), at(days=2)) == Send(SMS, "en", False)
    assert decide(sooner, FLOW, SendContext(contact()), MORNING) == Expire("stale")


def test_a_deferral_that_would_reach_the_default_limit_expires_the_message() -> None:
    # Due at 20:00 local, looked at 22:00: 08:00 the next morning is within a
    # day of its due time, but not within six hours.
    due = message(due_at=at(hours=12))
    six_hours = timedelta(hours=6)

    assert decide(due, FLOW, SendContext(contact()), NIGHT) == Defer(NEXT_MORNING, "quiet_hours")
    assert decide(due, FLOW, SendContext(contact()), NIGHT, stale_after=six_hours) == Expire(
        "quiet_hours"
    )


def test_message_before_its_expiry_is_sent() -> None:
    verdict = decide(message(expires_at=at(hours=3)), FLOW, SendContext(contact()), MORNING)

    assert verdict == Send(SMS, "en", False)


# --- recipient and consent ------------------------------------------------------------


def test_message_to_nobody_is_suppressed() -> None:
    assert decide(message(), FLOW, SendContext(None), MORNING) == Suppress("no_recipient")


def test_opted_out_of_sms_is_sent_by_email() -> None:
    context = SendContext(contact(), consent=opted_out(SMS))

    assert decide(message(), FLOW, context, MORNING) == Send(EMAIL, "en", False)


def test_opted_out_of_every_channel_is_suppressed_for_consent() -> None:
    context = SendContext(contact(), consent=opted_out(SMS, EMAIL))

    assert decide(message(), FLOW, context, MORNING) == Suppress("consent")


def test_no_address_on_any_channel_is_suppressed_for_no_contact_point() -> None:
    context = SendContext(contact(phone=None, email=None))

    assert decide(message(), FLOW, context, MORNING) == Suppress("no_contact_point")


def test_consent_is_checked_before_quiet_hours() -> None:
    context = SendContext(contact(), consent=opted_out(SMS, EMAIL))

    assert decide(message(), FLOW, context, NIGHT) == Suppress("consent")


# --- quiet hours and send windows ------------------------------------------------------


def test_message_in_quiet_hours_is_deferred_to_eight_next_morning() -> None:
    verdict = decide(message(due_at=NIGHT), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Defer(NEXT_MORNING, "quiet_hours")


def test_quiet_hours_are_read_in_the_recipients_zone() -> None:
    # 22:00 in Chicago is 13:00 the next day in Tokyo.
    context = SendContext(contact(timezone="Asia/Tokyo"))

    assert decide(message(), FLOW, context, NIGHT) == Send(SMS, "en", False)


def test_recipient_without_a_zone_gets_the_messages_zone() -> None:
    context = SendContext(contact(timezone=None))

    assert decide(message(due_at=NIGHT), FLOW, context, NIGHT) == Defer(NEXT_MORNING, "quiet_hours")


def test_deferral_that_would_outlive_the_message_expires_it_for_quiet_hours() -> None:
    verdict = decide(message(expires_at=at(hours=20)), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Expire("quiet_hours")


def test_deferral_landing_exactly_on_the_expiry_expires_the_message() -> None:
    verdict = decide(message(expires_at=NEXT_MORNING), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Expire("quiet_hours")


def test_deferral_within_the_messages_life_is_a_deferral() -> None:
    verdict = decide(message(expires_at=at(days=1, hours=1)), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Defer(NEXT_MORNING, "quiet_hours")


def test_message_outside_its_send_window_is_deferred_to_the_window_start() -> None:
    office = message(window=(time(9, 0), time(17, 0)))

    verdict = decide(office, FLOW, SendContext(contact()), at(hours=0, minutes=30))

    assert verdict == Defer(at(hours=1), "send_window")


def test_send_window_deferral_that_would_outlive_the_message_expires_it_for_the_window() -> None:
    office = message(window=(time(9, 0), time(17, 0)), expires_at=at(hours=12))

    verdict = decide(office, FLOW, SendContext(contact()), at(hours=10))  # 18:00 local

    assert verdict == Expire("send_window")


def test_quiet_hours_from_the_flow_apply() -> None:
    late = make_flow(quiet_hours={"start": "22:00", "end": "07:00"})
    half_past_nine = at(hours=13, minutes=30)

    assert decide(message(), late, SendContext(contact()), half_past_nine) == Send(SMS, "en", False)
    assert decide(message(), late, SendContext(contact()), NIGHT) == Defer(
        at(days=1, hours=-1), "quiet_hours"
    )


def test_deferral_over_spring_forward_lands_at_eight_local() -> None:
    saturday_night = datetime(2026, 3, 7, 22, 0, tzinfo=CHICAGO).astimezone(UTC)

    verdict = decide(message(due_at=saturday_night), FLOW, SendContext(contact()), saturday_night)

    assert verdict == Defer(datetime(2026, 3, 8, 13, 0, tzinfo=UTC), "quiet_hours")


# --- frequency caps -------------------------------------------------------------------


def test_third_sms_in_a_day_is_sent() -> None:
    context = SendContext(contact(), sent_at={SMS: [at(hours=-20), at(hours=-1)]})

    assert decide(message(), CAPPED, context, MORNING) == Send(SMS, "en", False)


def test_capped_sms_falls_back_to_email() -> None:
    context = SendContext(contact(), sent_at={SMS: [at(hours=-20), at(hours=-1), at()]})

    assert decide(message(), CAPPED, context, MORNING) == Send(EMAIL, "en", False)


def test_capped_on_every_channel_is_suppressed_for_the_cap() -> None:
    context = SendContext(
        contact(), sent_at={SMS: [at(hours=-20), at(hours=-1), at()], EMAIL: [at(hours=-3)]}
    )

    assert decide(message(), CAPPED_BOTH, context, MORNING) == Suppress("frequency_cap")


def test_capped_sms_without_email_is_suppressed_for_the_cap() -> None:
    context = SendContext(contact(email=None), sent_at={SMS: [at(hours=-20), at(hours=-1), at()]})

    assert decide(message(), CAPPED, context, MORNING) == Suppress("frequency_cap")


def test_essential_message_skips_the_cap() -> None:
    context = SendContext(contact(), sent_at={SMS: [at(hours=-20), at(hours=-1), at()]})

    verdict = decide(message(essential=True), CAPPED, context, MORNING)

    assert verdict == Send(SMS, "en", False)


def test_essential_message_still_waits_for_quiet_hours_to_end() -> None:
    verdict = decide(message(essential=True, due_at=NIGHT), FLOW, SendContext(contact()), NIGHT)

    assert verdict == Defer(NEXT_MORNING, "quiet_hours")


# --- language -------------------------------------------------------------------------


def test_language_the_flow_lacks_falls_back_to_the_default_and_says_so() -> None:
    verdict = decide(message(), FLOW, SendContext(contact(language="fr")), MORNING)

    assert verdict == Send(SMS, "en", True)


def test_regional_language_is_served_by_its_primary_language() -> None:
    verdict = decide(message(), FLOW, SendContext(contact(language="es-MX")), MORNING)

    assert verdict == Send(SMS, "es", False)


def test_recipient_without_a_language_gets_the_default_without_a_fallback_flag() -> None:
    verdict = decide(message(), FLOW, SendContext(contact(language=None)), MORNING)

    assert verdict == Send(SMS, "en", False)


# --- caregivers -----------------------------------------------------------------------


def test_caregiver_copy_uses_the_caregivers_phone_language_and_the_patients_zone() -> None:
    caregiver = {"id": "c-1", "phone": "+15555550102", "language": "es", "receives": ["transport"]}
    patient = make_event(patient=make_patient(language="en", caregivers=[caregiver])).patient
    carer = contact_for(patient, Recipient("p-1", "c-1"))
    copy = message(recipient=Recipient("p-1", "c-1"), topic="transport", due_at=MORNING)

    assert decide(copy, FLOW, SendContext(carer), MORNING) == Send(SMS, "es", False)
    assert decide(copy, FLOW, SendContext(carer), NIGHT) == Defer(NEXT_MORNING, "quiet_hours")
