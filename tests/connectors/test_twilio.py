"""The Twilio connector against the stand-in: what it sends, and how it reads each answer."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import pytest

from connectors.twilio import OPTED_OUT_CODE, QUEUE_FULL_CODE, TwilioConnector
from orchestrator.clock import SystemClock, VirtualClock
from orchestrator.errors import (
    AmbiguousSendError,
    MessageStaleError,
    PermanentSendError,
    RecipientOptedOutError,
    StoreError,
    TransientSendError,
)
from orchestrator.event import Channel
from orchestrator.runtime import Outgoing
from tests.connectors.conftest import TOKEN, twilio_config
from tests.standins import ACCOUNT_SID, StandIn

TO = "+15555550101"


def sms_to(to: str = TO, key: str = "k-1", body: str = "Reminder: visit on Tue") -> Outgoing:
    return Outgoing(key, Channel.SMS, to, body)


def test_send_creates_a_message_with_a_status_callback_naming_the_key(
    sms: TwilioConnector, twilio: StandIn
) -> None:
    receipt = sms.send(sms_to(key="abc123"))

    (request,) = twilio.sends()
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form["To"] == [TO]
    assert request.form["Body"] == ["Reminder: visit on Tue"]
    assert request.form["MessagingServiceSid"] == ["MG" + "1" * 32]
    assert request.form["StatusCallback"] == [
        "https://orchestrator.example.org/webhooks/twilio/status?key=abc123"
    ]
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert receipt.provider_id == twilio.created[0]["sid"]


def test_a_from_number_is_used_without_a_messaging_service(twilio: StandIn) -> None:
    connector = TwilioConnector(
        twilio_config(twilio, messaging_service_sid=None, from_number="+15555550100"),
        clock=SystemClock(),
    )
    try:
        connector.send(sms_to())
    finally:
        connector.close()

    (request,) = twilio.sends()
    assert request.form["From"] == ["+15555550100"]
    assert "MessagingServiceSid" not in request.form


def test_sends_reuse_one_connection(sms: TwilioConnector, twilio: StandIn) -> None:
    for i in range(5):
        sms.send(sms_to(key=f"k-{i}"))

    assert len(twilio.sends()) == 5
    assert len(twilio.ports()) == 1


def test_21610_records_an_opt_out_and_refuses(
    sms: TwilioConnector, twilio: StandIn, opted_out: list[str]
) -> None:
    twilio.errors[TO] = (400, 21610)

    with pytest.raises(RecipientOptedOutError):
        sms.send(sms_to(key="k-stop"))

    assert opted_out == ["k-stop"]


@pytest.mark.parametrize("code", [21211, 21614])
def test_an_invalid_number_fails_permanently_without_an_opt_out(
    sms: TwilioConnector, twilio: StandIn, opted_out: list[str], code: int
) -> None:
    twilio.errors[TO] = (400, code)

    with pytest.raises(PermanentSendError) as raised:
        sms.send(sms_to())

    assert not isinstance(raised.value, RecipientOptedOutError)
    assert opted_out == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient(
    sms: TwilioConnector, twilio: StandIn, status: int
) -> None:
    twilio.errors[TO] = (status, 20429 if status == 429 else None)

    with pytest.raises(TransientSendError):
        sms.send(sms_to())


def test_a_full_sender_queue_is_transient(sms: TwilioConnector, twilio: StandIn) -> None:
    twilio.errors[TO] = (400, QUEUE_FULL_CODE)

    with pytest.raises(TransientSendError):
        sms.send(sms_to())


def unsure_send(sms: TwilioConnector, twilio: StandIn, key: str) -> None:
    """A send whose answer never came: Twilio holds it past the client's timeout."""
    twilio.held.add(TO)
    with pytest.raises(AmbiguousSendError):
        sms.send(sms_to(key=key))
    twilio.release.set()


def test_a_refused_connection_is_transient(twilio: StandIn) -> None:
    connector = TwilioConnector(
        twilio_config(twilio, api_base="http://127.0.0.1:9"), clock=SystemClock()
    )
    try:
        with pytest.raises(TransientSendError):
            connector.send(sms_to())
    finally:
        connector.close()


def test_a_timeout_after_sending_is_ambiguous_and_find_recovers_the_message(
    sms: TwilioConnector, twilio: StandIn
) -> None:
    twilio.held.add(TO)

    with pytest.raises(AmbiguousSendError):
        sms.send(sms_to(key="k-slow"))
    twilio.release.set()

    receipt = sms.find("k-slow")

    assert receipt is not None
    assert receipt.provider_id == twilio.created[0]["sid"]
    assert len(twilio.sends()) == 1  # looked up, never sent again


def test_find_says_not_sent_when_twilio_has_no_such_message(
    sms: TwilioConnector, twilio: StandIn
) -> None:
    unsure_send(sms, twilio, "k-slow")
    twilio.created.clear()  # as if the request had never reached Twilio

    assert sms.find("k-slow") is None


def test_find_does_not_take_an_older_message_with_the_same_text_for_the_unsure_send(
    sms: TwilioConnector, twilio: StandIn
) -> None:
    unsure_send(sms, twilio, "k-slow")
    # What Twilio holds: only yesterday's message with the very same text.
    (today,) = twilio.created
    yesterday = format_datetime(datetime.now(UTC) - timedelta(days=1))
    twilio.created[:] = [today | {"sid": "SM" + "0" * 32, "date_created": yesterday}]

    assert sms.find("k-slow") is None


def test_a_failing_opt_out_record_still_reports_the_refusal(twilio: StandIn) -> None:
    def failing(key: str) -> None:
        raise StoreError("store write failed: OperationalError")

    connector = TwilioConnector(twilio_config(twilio), clock=SystemClock(), on_opt_out=failing)
    twilio.errors[TO] = (400, OPTED_OUT_CODE)
    try:
        with pytest.raises(RecipientOptedOutError):
            connector.send(sms_to())
    finally:
        connector.close()


def test_find_writes_no_phone_number_to_the_log(
    sms: TwilioConnector, twilio: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    unsure_send(sms, twilio, "k-slow")

    with caplog.at_level(logging.INFO):
        sms.find("k-slow")

    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert TO not in logged and quote(TO) not in logged


def test_find_of_a_send_it_did_not_make_cannot_tell(sms: TwilioConnector) -> None:
    with pytest.raises(TransientSendError):
        sms.find("k-unknown")


# --- the staleness limit goes to Twilio ------------------------------------------------

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def limited(valid_until: datetime) -> Outgoing:
    return Outgoing("k-1", Channel.SMS, TO, "Reminder: visit on Tue", valid_until=valid_until)


def connector_at(twilio: StandIn, now: datetime) -> TwilioConnector:
    return TwilioConnector(twilio_config(twilio), clock=VirtualClock(now))


@pytest.mark.parametrize(
    ("left", "validity"),
    [
        (timedelta(hours=2), "7200"),
        (timedelta(seconds=90.9), "90"),  # rounded down: never held past the limit
        (timedelta(seconds=1), "1"),
        (timedelta(days=1), "36000"),  # Twilio's longest
    ],
)
def test_a_send_carries_the_time_left_before_its_limit_as_validity_period(
    twilio: StandIn, left: timedelta, validity: str
) -> None:
    connector = connector_at(twilio, NOW)
    try:
        connector.send(limited(NOW + left))
    finally:
        connector.close()

    (request,) = twilio.sends()
    assert request.form["ValidityPeriod"] == [validity]


@pytest.mark.parametrize("left", [timedelta(seconds=0.5), timedelta(0), timedelta(hours=-1)])
def test_a_message_with_less_than_a_second_left_is_not_sent(
    twilio: StandIn, left: timedelta
) -> None:
    connector = connector_at(twilio, NOW)
    try:
        with pytest.raises(MessageStaleError):
            connector.send(limited(NOW + left))
    finally:
        connector.close()

    assert twilio.sends() == []


def test_a_message_without_a_limit_carries_no_validity_period(
    sms: TwilioConnector, twilio: StandIn
) -> None:
    sms.send(sms_to())

    (request,) = twilio.sends()
    assert "ValidityPeriod" not in request.form
