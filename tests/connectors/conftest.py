"""Fixtures for the connector tests: the stand-ins, and connectors pointed at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.sendgrid import SendGridConfig, SendGridConnector
from connectors.twilio import TwilioConfig, TwilioConnector
from orchestrator.clock import SystemClock
from tests.standins import ACCOUNT_SID, StandIn, sendgrid_standin, twilio_standin

TOKEN = "twilio-test-token"
# Short, so that a held answer turns into a client timeout quickly.
TIMEOUT = 0.5


@pytest.fixture
def twilio() -> Iterator[StandIn]:
    with twilio_standin() as standin:
        yield standin


@pytest.fixture
def sendgrid() -> Iterator[StandIn]:
    with sendgrid_standin() as standin:
        yield standin


def twilio_config(standin: StandIn, **changes: object) -> TwilioConfig:
    options: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": TOKEN,
        "messaging_service_sid": "MG" + "1" * 32,
        "status_callback": "https://orchestrator.example.org/webhooks/twilio/status",
        "api_base": standin.url,
        "timeout": TIMEOUT,
    }
    return TwilioConfig(**(options | changes))  # type: ignore[arg-type]


@pytest.fixture
def opted_out() -> list[str]:
    return []


@pytest.fixture
def sms(twilio: StandIn, opted_out: list[str]) -> Iterator[TwilioConnector]:
    connector = TwilioConnector(
        twilio_config(twilio), clock=SystemClock(), on_opt_out=opted_out.append
    )
    yield connector
    connector.close()


@pytest.fixture
def email(sendgrid: StandIn) -> SendGridConnector:
    return SendGridConnector(
        SendGridConfig(
            api_key="SG.test-key",
            sender="care@example.org",
            api_base=sendgrid.url,
            timeout=TIMEOUT,
        )
    )
