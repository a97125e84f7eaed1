"""Provider webhooks: Twilio status callbacks and inbound SMS, SendGrid delivery events.

Every route checks the provider's signature first: a forged or missing one
gets 403 and changes nothing but a security log line. A body that is signed
but malformed gets 400 with the reason and is kept as rejected input.
Delivery states only move forward (see `DeliveryLedger`); opt-outs, opt-ins
and replies become canonical events (see `Feedback`).
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from ..clock import Clock as ClockPort
from ..errors import JsonError
from ..event import Channel
from ..inbound_sms import classify
from ..limits import read_json
from ..message_status import MessageStatus
from ..ports import EventIntake, Input
from ..runtime.feedback import Feedback
from ..settings import Settings
from ..store.delivery import (
    KEY_LENGTH,
    PROVIDER_ID_LENGTH,
    RECEIPT_ID_LENGTH,
    DeliveryLedger,
    unstorable,
)
from .bodies import read_limited
from .deps import Clock, Intake, Store
from .deps import Settings as SettingsDep

__all__ = ["router", "sendgrid_events", "twilio_inbound", "twilio_status"]

log = logging.getLogger(__name__)

# Twilio message statuses, by what they mean for our record.
_HANDED_OVER = frozenset({"accepted", "scheduled", "queued", "sending", "sent"})
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"undelivered", "failed", "canceled"})
_OPTED_OUT_CODE = "21610"
# SendGrid events that say the address must not be mailed again, and the source we record.
_EMAIL_OPT_OUT = frozenset({"unsubscribe", "group_unsubscribe", "spamreport"})
_EMAIL_UNDELIVERABLE = frozenset({"bounce", "dropped"})
_EMAIL_ENGAGEMENT = frozenset({"open", "click"})
_EMAIL_KNOWN = (
    _EMAIL_OPT_OUT
    | _EMAIL_UNDELIVERABLE
    | _EMAIL_ENGAGEMENT
    | {"delivered", "deferred", "processed", "group_resubscribe"}
)
# A Unix time in seconds, in ASCII digits: `isdigit()` alone takes "²" and
# other digits `int()` refuses, and `int()` refuses more than 4,300 of them.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_TWILIO_ERROR_CODE = re.compile(r"[0-9]{1,10}")


class _Form(dict[str, list[str]]):
    """Form fields with every value of a repeated key, as the request validator wants them."""

    raw: bytes = b""

    def getlist(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None


class _Malformed(Exception):
    """A signed body we cannot use; the message is the reason given back."""


@dataclass
class _Hooks:
    """What the webhook routes use: the settings, the delivery ledger, feedback and the intake."""

    settings: Settings
    ledger: DeliveryLedger
    feedback: Feedback
    intake: EventIntake
    clock: ClockPort
    validator: RequestValidator | None
    verifier: EventWebhook
    public_key: Any
    public_url: str

    def forbidden(self, route: str, reason: str) -> Response:
        log.warning("webhook.forbidden", extra={"route": route, "reason": reason})
        return JSONResponse({"error": "signature check failed"}, status.HTTP_403_FORBIDDEN)

    async def malformed(self, route: str, body: bytes, reason: str) -> Response:
        await run_in_threadpool(self.intake.take, f"webhook:{route}", [Input.refused(body, reason)])
        log.warning("webhook.malformed", extra={"route": route, "reason": reason})
        return JSONResponse({"error": reason}, status.HTTP_400_BAD_REQUEST)

    async def limited(self, request: Request, route: str) -> bytes | Response:
        """The body, or 413 past the size limit: read before any signature is checked."""
        body = await read_limited(request, self.settings.max_body_bytes)
        if body is None:
            log.warning("webhook.too_large", extra={"route": route})
            return JSONResponse({"error": "body too large"}, 413)
        return body

    async def twilio_form(self, request: Request, route: str) -> _Form | Response:
        """The signed form of a Twilio request, or the response refusing it."""
        body = await self.limited(request, route)
        if isinstance(body, Response):
            return body
        signature = request.headers.get("x-twilio-signature")
        if self.validator is None:
            return self.forbidden(route, "twilio_not_configured")
        if not signature:
            return self.forbidden(route, "signature_missing")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # What Twilio signs is text: this cannot be from Twilio, and an
            # unsigned body is not worth keeping.
            return self.forbidden(route, "signature_invalid")
        form = _Form(parse_qs(text, keep_blank_values=True))
        form.raw = body
        url = (
            self.public_url
            + request.url.path
            + (f"?{request.url.query}" if request.url.query else "")
        )
        if not self.validator.validate(url, form, signature):
            return self.forbidden(route, "signature_invalid")
        return form

    async def twilio_status(self, request: Request) -> Response:
        route = "twilio.status"
        form = await self.twilio_form(request, route)
        if isinstance(form, Response):
            return form
        sid = form.first("MessageSid")
        state = (form.first("MessageStatus") or form.first("SmsStatus") or "").lower()
        key = request.query_params.get("key")
        if not sid or not state:
            return await self.malformed(
                route, form.raw, "MessageSid and MessageStatus are required"
            )
        if state not in _HANDED_OVER | _DELIVERED | _FAILED:
            return await self.malformed(
                route, form.raw, f"MessageStatus: unknown value {state[:40]!r}"
            )
        error_code = form.first("ErrorCode") or None
        problem = _unusable("MessageSid", sid, PROVIDER_ID_LENGTH) or (
            _unusable("key", key, KEY_LENGTH) if key is not None else None
        )
        if error_code is not None and not _TWILIO_ERROR_CODE.fullmatch(error_code):
            problem = problem or "ErrorCode: expected a Twilio error code (digits)"
        if problem:
            return await self.malformed(route, form.raw, problem)
        await run_in_threadpool(self._apply_twilio_status, key, sid, state, error_code)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    def _apply_twilio_status(
        self, key: str | None, sid: str, state: str, error_code: str | None
    ) -> None:
        now = self.clock.now()
        if key is not None:
            # A send whose outcome was unknown: Twilio has it, whatever the status.
            self.ledger.settle_sent(key, sid, now, "reconciled:callback")
        if state in _DELIVERED:
            self.ledger.advance(MessageStatus.DELIVERED, None, now, key=key, provider_id=sid)
        elif state in _FAILED:
            reason = f"provider:{state}" + (f":{error_code}" if error_code else "")
            self.ledger.advance(MessageStatus.FAILED, reason, now, key=key, provider_id=sid)
            if error_code == _OPTED_OUT_CODE and key is not None:
                self.feedback.consent_for_message(
                    key, Channel.SMS, granted=False, source="twilio", ref=sid
                )

    async def twilio_inbound(self, request: Request) -> Response:
        route = "twilio.inbound"
        form = await self.twilio_form(request, route)
        if isinstance(form, Response):
            return form
        sid, sender, body = form.first("MessageSid"), form.first("From"), form.first("Body")
        if not sid or not sender or body is None:
            return await self.malformed(route, form.raw, "MessageSid, From and Body are required")
        problem = _unusable("MessageSid", sid, PROVIDER_ID_LENGTH)
        if not _E164.fullmatch(sender):
            problem = problem or "From: expected an E.164 number"
        if problem:
            return await self.malformed(route, form.raw, problem)
        intent = classify(body)
        reply = MessagingResponse()
        if intent.kind == "help":
            reply.message(self.settings.sms_help_text)
        elif intent.kind in ("opt_out", "opt_in"):
            granted = intent.kind == "opt_in"
            await run_in_threadpool(
                lambda: self.feedback.consent_for_phone(
                    sender, granted=granted, source="twilio", ref=sid
                )
            )
        else:
            answer = intent.reply or "other"
            await run_in_threadpool(
                lambda: self.feedback.replied(sender, answer, source="twilio", ref=sid)
            )
        log.info("webhook.inbound_sms", extra={"kind": intent.kind, "reply": intent.reply})
        return Response(str(reply), media_type="application/xml")

    async def sendgrid_events(self, request: Request) -> Response:
        route = "sendgrid.events"
        body = await self.limited(request, route)
        if isinstance(body, Response):
            return body
        signature = request.headers.get(EventWebhookHeader.SIGNATURE)
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
        if self.public_key is None:
            return self.forbidden(route, "sendgrid_not_configured")
        if not signature or not timestamp:
            return self.forbidden(route, "signature_missing")
        if not _UNIX_SECONDS.fullmatch(timestamp):
            return self.forbidden(route, "timestamp_invalid")
        age = abs(self.clock.now().timestamp() - int(timestamp))
        if age > self.settings.sendgrid_webhook_tolerance_seconds:
            return self.forbidden(route, "timestamp_outside_tolerance")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self.forbidden(route, "signature_invalid")  # what was signed was text
        try:
            valid = self.verifier.verify_signature(text, signature, timestamp, self.public_key)
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            return self.forbidden(route, "signature_invalid")
        try:
            events = _sendgrid_batch(text)
        except _Malformed as exc:
            return await self.malformed(route, body, str(exc))
        applied = await run_in_threadpool(self._apply_sendgrid, events)
        return JSONResponse({"received": len(events), "applied": applied})

    def _apply_sendgrid(self, events: list[Mapping[str, Any]]) -> int:
        now = self.clock.now()
        ids = [str(e["sg_event_id"]) for e in events]
        seen = self.ledger.received("sendgrid", ids)
        applied: dict[str, None] = {}
        try:
            for event, event_id in zip(events, ids, strict=True):
                if event_id in seen or event_id in applied:
                    continue  # a duplicate, in this batch or an earlier one
                self._apply_sendgrid_event(event, event_id)
                applied[event_id] = None
        finally:
            # Receipts only for what was applied: when applying fails part-way
            # (500), SendGrid's retry applies the rest instead of skipping it. A
            # crash before this line applies some events twice, which changes
            # nothing but the count of opens and clicks.
            self.ledger.first_receipt("sendgrid", list(applied), now)
        return len(applied)

    def _apply_sendgrid_event(self, event: Mapping[str, Any], event_id: str) -> None:
        now = self.clock.now()
        kind = str(event["event"])
        key = event.get("message_key")
        key = key if isinstance(key, str) else None
        message_id = event.get("sg_message_id")
        # An sg_message_id is the X-Message-Id we kept, then ".filter...".
        provider_id = message_id.split(".", 1)[0] if isinstance(message_id, str) else None

        def email_consent(*, granted: bool) -> None:
            # Dated when the person decided, as SendGrid says.
            if key is not None:
                self.feedback.consent_for_message(
                    key,
                    Channel.EMAIL,
                    granted=granted,
                    source=f"sendgrid:{kind}",
                    ref=event_id,
                    at=_event_time(event.get("timestamp")),
                )

        if key is not None and kind != "deferred":
            self.ledger.settle_sent(key, provider_id, now, "reconciled:event")
        if kind == "delivered":
            self.ledger.advance(
                MessageStatus.DELIVERED, None, now, key=key, provider_id=provider_id
            )
        elif kind in _EMAIL_ENGAGEMENT:
            self.ledger.engaged(kind, now, key=key, provider_id=provider_id)
        elif kind in _EMAIL_UNDELIVERABLE:
            if kind == "bounce" and event.get("type") == "blocked":
                reason = "provider:blocked"  # a temporary refusal: the address stays usable
            else:
                reason = f"provider:{kind}"
                email_consent(granted=False)
            self.ledger.advance(MessageStatus.FAILED, reason, now, key=key, provider_id=provider_id)
        elif kind in _EMAIL_OPT_OUT:
            email_consent(granted=False)
        elif kind == "group_resubscribe":
            email_consent(granted=True)
        logged = kind if kind in _EMAIL_KNOWN else "other"  # the sender's text stays out of logs
        log.info("webhook.sendgrid_event", extra={"kind": logged, "message_key": key})


@cache
def _checkers(token: str | None, sendgrid_key: str | None) -> tuple[RequestValidator | None, Any]:
    """The signature checkers for these credentials (built once: the key is parsed)."""
    validator = RequestValidator(token) if token else None
    public_key = EventWebhook().convert_public_key_to_ecdsa(sendgrid_key) if sendgrid_key else None
    return validator, public_key


def _hooks(settings: SettingsDep, store: Store, intake: Intake, clock: Clock) -> _Hooks:
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    validator, public_key = _checkers(token, settings.sendgrid_webhook_public_key)
    ledger = DeliveryLedger(store.transactions)
    # A webhook is not a send thread: its feedback is taken at once.
    feedback = Feedback(intake, ledger, clock)
    return _Hooks(
        settings,
        ledger,
        feedback,
        intake,
        clock,
        validator,
        EventWebhook(),
        public_key,
        settings.public_url.rstrip("/"),
    )


_TheHooks = Annotated[_Hooks, Depends(_hooks)]

router = APIRouter(prefix="/webhooks")


@router.post("/twilio/status")
async def twilio_status(request: Request, hooks: _TheHooks) -> Response:
    return await hooks.twilio_status(request)


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request, hooks: _TheHooks) -> Response:
    return await hooks.twilio_inbound(request)


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request, hooks: _TheHooks) -> Response:
    return await hooks.sendgrid_events(request)


def _sendgrid_batch(text: str) -> list[Mapping[str, Any]]:
    """The events of a SendGrid batch.

    Raises:
        _Malformed: not a JSON array of event objects with `event` and `sg_event_id`.
    """
    try:
        # The one JSON reader every door uses: depth, number and syntax limits alike.
        data = read_json(text)
    except JsonError as exc:
        raise _Malformed(str(exc)) from None
    if not isinstance(data, list):
        raise _Malformed("body: expected a JSON array of events")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise _Malformed(f"item {i}: expected an object")
        for name in ("event", "sg_event_id"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise _Malformed(f"item {i}: {name}: required, a string")
        key, message_id = item.get("message_key"), item.get("sg_message_id")
        problem = (
            _unusable("sg_event_id", item["sg_event_id"], RECEIPT_ID_LENGTH)
            or (_unusable("message_key", key, KEY_LENGTH) if isinstance(key, str) else None)
            or (
                _unusable("sg_message_id", message_id.split(".", 1)[0], PROVIDER_ID_LENGTH)
                or _unusable("sg_message_id", message_id, len(message_id))
                if isinstance(message_id, str)
                else None
            )
        )
        if problem:
            raise _Malformed(f"item {i}: {problem}")
    return data


def _unusable(name: str, value: str, limit: int) -> str | None:
    """`name: why` when the store could not look `value` up; None when it can."""
    why = unstorable(value, limit)
    return f"{name}: {why}" if why else None


def _event_time(value: object) -> datetime | None:
    """A SendGrid event's `timestamp` (Unix seconds) as a UTC time; None if unusable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
