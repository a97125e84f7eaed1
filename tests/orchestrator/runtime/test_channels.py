"""Choosing the real channels from settings: all or nothing per channel."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sendgrid import SendGridConnector
from connectors.twilio import TwilioConnector
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.runtime import EventProcessor, FlowRegistry
from orchestrator.runtime.channels import ChannelConfigError, real_connectors
from orchestrator.runtime.intake import Intake, IntakeQueue
from orchestrator.settings import Settings
from orchestrator.store import InboundArchive, SqlStore
from orchestrator.store.delivery import DeliveryLedger
from tests.builders import make_flow

TWILIO = {
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": "token",
    "twilio_from_number": "+15555550100",
}
SENDGRID = {"sendgrid_api_key": "SG.key", "sendgrid_sender": "care@example.org"}


def chosen(store: SqlStore, clock: VirtualClock, **settings: Any) -> dict[Channel, object]:
    flow = make_flow()
    processor = EventProcessor(store, FlowRegistry.of({flow.id: flow}), clock)
    deferred = IntakeQueue(Intake(processor, store, clock), InboundArchive(store))
    found = real_connectors(
        Settings(**settings), DeliveryLedger(store.transactions), clock, deferred
    )
    for connector in found.values():
        if isinstance(connector, TwilioConnector):
            connector.close()
    return dict(found)


def test_no_credentials_leave_the_sandbox(store: SqlStore, clock: VirtualClock) -> None:
    assert chosen(store, clock) == {}


def test_full_credentials_choose_twilio_and_sendgrid(store: SqlStore, clock: VirtualClock) -> None:
    found = chosen(store, clock, **TWILIO, **SENDGRID)

    assert isinstance(found[Channel.SMS], TwilioConnector)
    assert isinstance(found[Channel.EMAIL], SendGridConnector)


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"twilio_account_sid": "AC1"}, "AUTH_TOKEN"),
        (TWILIO | {"twilio_from_number": None}, "MESSAGING_SERVICE_SID"),
        ({"sendgrid_api_key": "SG.key"}, "SENDER"),
    ],
)
def test_a_half_configured_channel_is_an_error_naming_what_is_missing(
    store: SqlStore, clock: VirtualClock, settings: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ChannelConfigError, match=missing):
        chosen(store, clock, **settings)
