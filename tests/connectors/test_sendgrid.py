"""The SendGrid connector against the stand-in: the mail it builds, and how it reads each answer."""

from __future__ import annotations

import pytest

from connectors.sendgrid import SendGridConfig, SendGridConnector
from orchestrator.errors import AmbiguousSendError, PermanentSendError, TransientSendError
from orchestrator.event import Channel
from orchestrator.runtime import Outgoing
from tests.standins import StandIn

TO = "ana@example.org"


def mail_to(to: str = TO, key: str = "k-1", html: str | None = "<p>Your guide</p>") -> Outgoing:
    return Outgoing(key, Channel.EMAIL, to, "Your guide", "Before your visit", html)


def test_send_posts_text_and_html_with_only_the_key_as_custom_args(
    email: SendGridConnector, sendgrid: StandIn
) -> None:
    receipt = email.send(mail_to(key="abc123"))

    (request,) = sendgrid.sends()
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == "Bearer SG.test-key"
    mail = request.json
    assert mail["from"] == {"email": "care@example.org"}
    assert mail["personalizations"][0]["to"] == [{"email": TO}]
    assert mail["subject"] == "Before your visit"
    assert mail["content"] == [
        {"type": "text/plain", "value": "Your guide"},
        {"type": "text/html", "value": "<p>Your guide</p>"},
    ]
    assert mail["custom_args"] == {"message_key": "abc123"}
    assert receipt.provider_id == "SGMSG00000001"


def test_a_mail_without_html_has_only_the_text_part(
    email: SendGridConnector, sendgrid: StandIn
) -> None:
    email.send(mail_to(html=None))

    assert [c["type"] for c in sendgrid.sends()[0].json["content"]] == ["text/plain"]


def test_find_answers_for_a_send_this_process_made(email: SendGridConnector) -> None:
    receipt = email.send(mail_to(key="k-9"))

    assert email.find("k-9") == receipt
    with pytest.raises(TransientSendError):
        email.find("k-unknown")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient(
    email: SendGridConnector, sendgrid: StandIn, status: int
) -> None:
    sendgrid.errors[TO] = (status, None)

    with pytest.raises(TransientSendError):
        email.send(mail_to())


def test_a_rejected_mail_fails_permanently(email: SendGridConnector, sendgrid: StandIn) -> None:
    sendgrid.errors[TO] = (400, None)

    with pytest.raises(PermanentSendError):
        email.send(mail_to())


def test_a_timeout_after_sending_is_ambiguous(email: SendGridConnector, sendgrid: StandIn) -> None:
    sendgrid.held.add(TO)

    with pytest.raises(AmbiguousSendError):
        email.send(mail_to())

    assert len(sendgrid.sends()) == 1


def test_a_refused_connection_is_transient() -> None:
    connector = SendGridConnector(
        SendGridConfig(api_key="SG.k", sender="care@example.org", api_base="http://127.0.0.1:9")
    )

    with pytest.raises(TransientSendError):
        connector.send(mail_to())


def test_a_failed_tls_handshake_is_transient_since_nothing_reached_sendgrid(
    sendgrid: StandIn,
) -> None:
    # TLS to a plain-HTTP server: the handshake fails before any request is written.
    base = sendgrid.url.replace("http://", "https://")
    connector = SendGridConnector(
        SendGridConfig(api_key="SG.k", sender="care@example.org", api_base=base)
    )

    with pytest.raises(TransientSendError):
        connector.send(mail_to())

    assert sendgrid.sends() == []
