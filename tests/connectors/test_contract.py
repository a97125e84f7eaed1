"""What every connector promises the dispatcher, checked on the sandbox and on both stand-ins.

A send hands over the message once and answers with a provider id; an
unknown key is never claimed as sent by `find` (which may say it cannot tell).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from connectors.sandbox import SandboxConnector
from connectors.sendgrid import SendGridConnector
from connectors.twilio import TwilioConnector
from orchestrator.clock import VirtualClock
from orchestrator.errors import TransientSendError
from orchestrator.event import Channel
from orchestrator.runtime import Connector, Outgoing
from orchestrator.store import SqlStore, connect
from tests.builders import T0
from tests.standins import StandIn


@dataclass
class Subject:
    connector: Connector
    channel: Channel
    to: str
    # What the far side received, as (to, body) pairs.
    received: Callable[[], list[tuple[str, str]]]


def _sandbox(sqlite_url: str) -> Iterator[Subject]:
    engine = connect(sqlite_url)
    store = SqlStore(engine)
    yield Subject(
        SandboxConnector(store, Channel.SMS, VirtualClock(T0)),
        Channel.SMS,
        "+15555550101",
        lambda: [(e.to, e.body) for e in store.outbox()],
    )
    engine.dispose()


@pytest.fixture(params=["sandbox", "twilio", "sendgrid"])
def subject(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Subject]:
    if request.param == "sandbox":
        yield from _sandbox(sqlite_url)
    elif request.param == "twilio":
        twilio: StandIn = request.getfixturevalue("twilio")
        sms: TwilioConnector = request.getfixturevalue("sms")
        yield Subject(
            sms,
            Channel.SMS,
            "+15555550101",
            lambda: [(r.form["To"][0], r.form["Body"][0]) for r in twilio.sends()],
        )
    else:
        sendgrid: StandIn = request.getfixturevalue("sendgrid")
        email: SendGridConnector = request.getfixturevalue("email")
        yield Subject(
            email,
            Channel.EMAIL,
            "ana@example.org",
            lambda: [
                (r.json["personalizations"][0]["to"][0]["email"], r.json["content"][0]["value"])
                for r in sendgrid.sends()
            ],
        )


def test_a_send_hands_the_message_over_once_and_names_it(subject: Subject) -> None:
    outgoing = Outgoing("k-contract", subject.channel, subject.to, "See you Tuesday", "Visit")

    receipt = subject.connector.send(outgoing)

    assert receipt.provider_id
    assert subject.received() == [(subject.to, "See you Tuesday")]


def test_an_unknown_key_is_never_claimed_as_sent(subject: Subject) -> None:
    try:
        found = subject.connector.find("k-never-sent")
    except TransientSendError:
        return  # "cannot tell" is allowed: the message is held, not resent
    assert found is None
