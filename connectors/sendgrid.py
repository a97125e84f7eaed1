"""The SendGrid email connector, on the official `sendgrid` library.

Each mail has a text and, when the template has one, an HTML part; its
`custom_args` carry only the message's opaque idempotency key, which SendGrid
echoes in every event-webhook event. The `X-Message-Id` answer header is kept
as the provider id (event `sg_message_id`s start with it). Errors are
translated once, here: 429, 5xx and any failure to connect or to write the
request are transient; other 4xx refuse for good; a timeout while reading the
answer is ambiguous and never resent blindly (the "processed" event settles it).
"""

from __future__ import annotations

import threading
import urllib.error
from collections import OrderedDict
from dataclasses import dataclass

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Content, CustomArg, Mail, MimeType

from orchestrator.errors import (
    AmbiguousSendError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from orchestrator.ports import Outgoing, Receipt

__all__ = ["SendGridConfig", "SendGridConnector"]

_API = "https://api.sendgrid.com"
_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class SendGridConfig:
    api_key: str
    sender: str
    api_base: str | None = None
    timeout: float = 10.0


class SendGridConnector:
    """Sends email through SendGrid's v3 Mail Send API; safe to call from several threads."""

    def __init__(self, config: SendGridConfig) -> None:
        self.config = config
        # The client keeps request headers on itself: one per thread, never shared.
        self._local = threading.local()
        # Sends this process made, for `find` after a store failure mid-dispatch.
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def _client(self) -> SendGridAPIClient:
        client: SendGridAPIClient | None = getattr(self._local, "client", None)
        if client is None:
            client = SendGridAPIClient(
                api_key=self.config.api_key, host=(self.config.api_base or _API).rstrip("/")
            )
            client.client.timeout = self.config.timeout
            self._local.client = client
        return client

    def send(self, outgoing: Outgoing) -> Receipt:
        mail = Mail(
            from_email=self.config.sender,
            to_emails=outgoing.to,
            subject=outgoing.subject or "",
        )
        mail.add_content(Content(MimeType.text, outgoing.body))
        if outgoing.html:
            mail.add_content(Content(MimeType.html, outgoing.html))
        mail.custom_arg = CustomArg("message_key", outgoing.key)
        try:
            response = self._client().send(mail)
        except HTTPError as exc:
            raise _translate(exc) from exc
        except urllib.error.URLError as exc:
            # urllib raises URLError only while connecting and writing the request
            # (refused, DNS, TLS, a connect timeout): SendGrid cannot have taken
            # a request it did not receive whole. A failure while reading the
            # answer comes out unwrapped, below, and is the ambiguous one.
            raise TransientSendError(
                f"SendGrid unreachable: {exc.reason.__class__.__name__}"
            ) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise AmbiguousSendError(
                f"SendGrid outcome unknown after {exc.__class__.__name__}"
            ) from exc
        message_id = response.headers.get("X-Message-Id") if response.headers else None
        if not message_id:
            raise AmbiguousSendError(f"SendGrid answered {response.status_code} without an id")
        with self._lock:
            self._sent[outgoing.key] = message_id
            while len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)
        return Receipt(str(message_id))

    def find(self, key: str) -> Receipt | None:
        """A send this process made; SendGrid itself cannot be asked by key.

        Raises:
            TransientSendError: unknown here; its "processed" event settles it.
        """
        with self._lock:
            found = self._sent.get(key)
        if found is None:
            raise TransientSendError("SendGrid cannot be asked by key; waiting for its events")
        return Receipt(found)


def _translate(exc: HTTPError) -> SendError:
    status = int(getattr(exc, "status_code", 0) or 0)
    if status == 429 or status >= 500:
        return TransientSendError(f"SendGrid answered {status}")
    if status in (401, 403):
        # The account, not the message: retry while an operator fixes the key.
        return TransientSendError(f"SendGrid refused the API key ({status})")
    return PermanentSendError(f"SendGrid answered {status}")
