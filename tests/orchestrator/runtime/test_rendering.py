"""The render context: what a template sees for one message to one recipient."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.actions import ScheduleMessage
from orchestrator.engine import advance
from orchestrator.event import Channel
from orchestrator.event_schema import parse_event
from orchestrator.journey import Journey, Recipient, ScheduledMessage
from orchestrator.runtime import Organisation, render_context
from tests.builders import T0, make_event_data, make_flow

FLOW = make_flow()
ORG = Organisation("Riverside Health", "+1 555 0100", "https://portal.example.org/")
# Saturday 2026-03-07, 10:30 in Chicago (CST).
SATURDAY = datetime(2026, 3, 7, 16, 30, tzinfo=UTC)


def booked() -> tuple[ScheduledMessage, Journey]:
    data = make_event_data(id="evt-render", start=SATURDAY)
    data["appointment"]["provider"] = "Dr. Example"
    decision = advance(Journey.start("p-1", FLOW.id), parse_event(data), FLOW, T0)
    reminder = next(
        a.message
        for a in decision.actions
        if isinstance(a, ScheduleMessage) and a.message.message_id == "reminder_72h"
    )
    return reminder, decision.journey


def context(
    channel: Channel = Channel.SMS,
    language: str = "en",
    timezone: str = "America/Chicago",
    **changes: Any,
) -> dict[str, Any]:
    message, journey = booked()
    return render_context(
        replace(message, **changes),
        journey,
        channel=channel,
        language=language,
        timezone=timezone,
        caregiver_relationship=None,
        org=ORG,
    )


@pytest.mark.parametrize(
    ("language", "when", "date"),
    [
        ("en", "Sat Mar 7, 10:30 AM", "Saturday, March 7, 2026"),
        ("es", "sáb 7 mar, 10:30", "sábado, 7 de marzo de 2026"),
    ],
)
def test_dates_are_written_in_the_recipients_language(language: str, when: str, date: str) -> None:
    appointment = context(language=language)["appointment"]

    assert (appointment["when"], appointment["date"]) == (when, date)
    assert appointment["location"] == "Main Campus"


def test_dates_are_written_in_the_recipients_time_zone() -> None:
    assert context(timezone="America/New_York")["appointment"]["when"] == "Sat Mar 7, 11:30 AM"


def test_sms_context_names_neither_provider_nor_service() -> None:
    sms = context(Channel.SMS)

    assert "provider" not in sms["appointment"]
    assert "service" not in sms["appointment"]
    assert "Dr. Example" not in repr(sms)
    assert "cardiology" not in repr(sms)


def test_email_context_names_provider_and_service() -> None:
    email = context(Channel.EMAIL)["appointment"]

    assert (email["provider"], email["service"]) == ("Dr. Example", "cardiology.consult")


def test_links_carry_a_token_from_the_message_key_not_the_patient_id() -> None:
    message, _ = booked()
    links = context()["links"]

    assert set(links) == {"intake", "directions", "reschedule", "survey", "guide"}
    for name, link in links.items():
        assert link == f"https://portal.example.org/{name[0]}/{message.key[:12]}"
        assert "p-1" not in link


def test_message_without_its_journey_renders_with_empty_appointment_fields() -> None:
    message, _ = booked()

    found = render_context(
        message,
        None,
        channel=Channel.EMAIL,
        language="en",
        timezone="America/Chicago",
        caregiver_relationship=None,
        org=ORG,
    )

    assert found["appointment"] == {
        "when": "",
        "date": "",
        "time": "",
        "location": "",
        "provider": "",
        "service": "",
    }


def test_caregiver_recipient_is_marked_with_the_relationship() -> None:
    message, journey = booked()

    found = render_context(
        replace(message, recipient=Recipient("p-1", "c-1")),
        journey,
        channel=Channel.SMS,
        language="en",
        timezone="America/Chicago",
        caregiver_relationship="daughter",
        org=ORG,
    )

    assert found["recipient"] == {"is_caregiver": True, "relationship": "daughter"}
    assert context()["recipient"] == {"is_caregiver": False, "relationship": None}
