"""The Twilio SMS connector, on the official `twilio` library.

`send` creates a Message with a status callback that carries the message's
idempotency key, so delivery callbacks find it. Errors are translated once,
here: 21610 (the recipient texted STOP) records an opt-out and refuses;
invalid-number errors refuse for good; 429, 5xx and connection failures are
transient. A timeout after the request went out is ambiguous: the message may
exist at Twilio, so it is never resent blindly; `find` looks for it among
the recipient's recent messages, and the status callback settles it too.

Each message carries the time left before its staleness limit as
`ValidityPeriod` (Twilio takes 1 to 36,000 seconds), so Twilio drops rather
than delivers a message that waited in its queue past the limit; a message
with less than a second left is not sent at all.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from orchestrator.clock import Clock
from orchestrator.errors import (
    AmbiguousSendError,
    MessageStaleError,
    PermanentSendError,
    RecipientOptedOutError,
    SendError,
    TransientSendError,
)
from orchestrator.ports import Outgoing, Receipt

__all__ = [
    "INVALID_NUMBER_CODES",
    "OPTED_OUT_CODE",
    "QUEUE_FULL_CODE",
    "VALIDITY_RANGE",
    "TwilioConfig",
    "TwilioConnector",
]

log = logging.getLogger(__name__)

OPTED_OUT_CODE = 21610
# Codes that say the number cannot take SMS at all: retrying cannot help.
INVALID_NUMBER_CODES = frozenset({21211, 21212, 21217, 21401, 21407, 21408, 21612, 21614})
# The sender's queue is full (a 400): a burst to wait out, not a refusal.
QUEUE_FULL_CODE = 21611
# Ambiguous sends remembered for `find`; older ones wait for their status callback.
_REMEMBERED = 10_000
# What Twilio's ValidityPeriod accepts, in seconds.
VALIDITY_RANGE = (1, 36_000)
# How far Twilio's clock may be behind ours when `find` compares creation times.
_CLOCK_SKEW = timedelta(minutes=5)
# Twilio's `http_client` logger writes request URLs and query parameters (the
# recipient's number, in `find`) at INFO: patient data, kept out of our logs.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    account_sid: str
    auth_token: str
    messaging_service_sid: str | None = None
    from_number: str | None = None
    # The public URL of `POST /webhooks/twilio/status`; None sends no callback URL.
    status_callback: str | None = None
    api_base: str | None = None
    timeout: float = 10.0
    pool_size: int = 16


@dataclass(frozen=True, slots=True)
class _Unsure:
    to: str
    body: str
    started: datetime


class TwilioConnector:
    """Sends SMS through Twilio's Messages API; safe to call from several threads."""

    def __init__(
        self,
        config: TwilioConfig,
        *,
        clock: Clock,
        on_opt_out: Callable[[str], object] | None = None,
    ) -> None:
        if not (config.messaging_service_sid or config.from_number):
            raise ValueError("Twilio needs a messaging service sid or a from number")
        self.config = config
        # The dispatcher's clock: the time left before a message's limit is read on it.
        self._clock = clock
        self._on_opt_out = on_opt_out
        http = TwilioHttpClient(pool_connections=True, timeout=config.timeout)
        assert http.session is not None
        # One pool of kept-alive connections, as large as the dispatcher's concurrency.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.pool_size)
        http.session.mount("https://", adapter)
        http.session.mount("http://", adapter)
        self._client = Client(config.account_sid, config.auth_token, http_client=http)
        if config.api_base:
            self._client.api.base_url = config.api_base.rstrip("/")
        self._unsure: OrderedDict[str, _Unsure] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        session = self._client.http_client.session
        if session is not None:
            session.close()

    def send(self, outgoing: Outgoing) -> Receipt:
        options: dict[str, str | int] = (
            {"messaging_service_sid": self.config.messaging_service_sid}
            if self.config.messaging_service_sid
            else {"from_": self.config.from_number or ""}
        )
        if outgoing.valid_until is not None:
            options["validity_period"] = self._validity(outgoing)
        if self.config.status_callback:
            options["status_callback"] = f"{self.config.status_callback}?key={quote(outgoing.key)}"
        started = datetime.now(UTC)
        try:
            message = self._client.messages.create(to=outgoing.to, body=outgoing.body, **options)
        except TwilioRestException as exc:
            raise self._translate(exc, outgoing.key) from exc
        except requests.RequestException as exc:
            if _never_sent(exc):
                raise TransientSendError(f"Twilio unreachable: {exc.__class__.__name__}") from exc
            self._remember(outgoing, started)
            raise AmbiguousSendError(
                f"Twilio outcome unknown after {exc.__class__.__name__}"
            ) from exc
        if not message.sid:
            raise AmbiguousSendError("Twilio answered without a message sid")
        return Receipt(message.sid)

    def _validity(self, outgoing: Outgoing) -> int:
        """Whole seconds left before the message's limit, within what Twilio accepts.

        Rounded down: Twilio must never hold it past the limit.

        Raises:
            MessageStaleError: less than a second is left.
        """
        assert outgoing.valid_until is not None
        left = int((outgoing.valid_until - self._clock.now()).total_seconds())
        shortest, longest = VALIDITY_RANGE
        if left < shortest:
            raise MessageStaleError("the message reached its staleness limit before it was sent")
        return min(left, longest)

    def find(self, key: str) -> Receipt | None:
        """Look an ambiguous send up among the recipient's newest messages at Twilio.

        Raises:
            TransientSendError: this process did not make the send (a restart),
                or Twilio cannot be asked now; the status callback settles it.
        """
        with self._lock:
            unsure = self._unsure.get(key)
        if unsure is None:
            raise TransientSendError("no record of this send here; waiting for its callback")
        try:
            recent = self._client.messages.list(to=unsure.to, limit=20)
        except (TwilioRestException, requests.RequestException) as exc:
            raise TransientSendError(f"Twilio lookup failed: {exc.__class__.__name__}") from exc
        with self._lock:
            self._unsure.pop(key, None)
        # Only a message created since this send began: the same text sent
        # yesterday (a recurring reminder) is not this one.
        since = unsure.started - _CLOCK_SKEW
        for message in recent:
            created = message.date_created
            if (
                message.body == unsure.body
                and message.sid
                and (created is None or created >= since)
            ):
                return Receipt(message.sid)
        return None

    def _remember(self, outgoing: Outgoing, started: datetime) -> None:
        with self._lock:
            self._unsure[outgoing.key] = _Unsure(outgoing.to, outgoing.body, started)
            while len(self._unsure) > _REMEMBERED:
                self._unsure.popitem(last=False)

    def _translate(self, exc: TwilioRestException, key: str) -> SendError:
        code, status = exc.code, exc.status
        if code == OPTED_OUT_CODE:
            if self._on_opt_out is not None:
                try:
                    self._on_opt_out(key)
                except Exception as error:  # noqa: BLE001 - the refusal must still be reported
                    # Twilio created no message whatever happened here: report the
                    # refusal; the opt-out itself is lost, so say so to the operator.
                    log.error(
                        "twilio.opt_out_not_recorded",
                        extra={"message_key": key, "error": error.__class__.__name__},
                    )
            return RecipientOptedOutError(f"Twilio {code}: the recipient unsubscribed")
        if code in INVALID_NUMBER_CODES:
            return PermanentSendError(f"Twilio {code}: the number cannot receive SMS")
        if code == QUEUE_FULL_CODE:
            return TransientSendError(f"Twilio {code}: the sender's queue is full")
        if status == 429 or status >= 500:
            return TransientSendError(f"Twilio answered {status} (code {code})")
        if status in (401, 403):
            # The account, not the message: retry while an operator fixes the credentials.
            return TransientSendError(f"Twilio refused the credentials ({status})")
        return PermanentSendError(f"Twilio answered {status} (code {code})")


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request failed before it could reach Twilio (safe to retry)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False
