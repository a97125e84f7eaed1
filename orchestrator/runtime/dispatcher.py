"""The dispatcher: due messages through the policies, the templates and a connector.

`tick()` claims what is due under a lease and dispatches each message:
the send-time gate (staleness, consent, quiet hours, caps) decides; a
message that may go is rendered in the recipient's language and handed to
the connector of its channel with its idempotency key. Transient errors are
retried with exponential backoff and jitter; a permanent error falls back to
the next usable channel, else the message fails. Every message ends in a
final audited status.

A message marked "sending" whose claimer died is not sent blindly again:
the connector is asked whether it has the key (`find`). Nor is one whose
send ended ambiguously (a timeout after the request may have arrived): it
is held as "sending" until a delivery callback or `find` settles it.

With `concurrency` above one, a batch is sent on that many threads, one
recipient's messages in order on one thread (so caps hold within a batch).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Protocol

from ..clock import Clock
from ..errors import (
    AmbiguousSendError,
    PermanentSendError,
    RecipientOptedOutError,
    SendError,
    StoreError,
    TemplateError,
    TransientSendError,
)
from ..event import Channel
from ..journey import Journey, ScheduledMessage
from ..policies import Defer, Expire, Send, SendContext, Suppress, contactable, decide
from ..recipients import Contact, contact_for
from ..store import Claim, SendingFacts, SqlStore
from ..templates import TemplateSet
from .registry import FlowRegistry
from .rendering import Organisation, render_context

__all__ = ["Connector", "Dispatcher", "Outgoing", "Receipt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message for one address, keyed for idempotency."""

    key: str
    channel: Channel
    to: str
    body: str
    subject: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    provider_id: str


class Connector(Protocol):
    """Hands messages to a provider (Twilio, SendGrid) or to the sandbox outbox."""

    def send(self, outgoing: Outgoing) -> Receipt:
        """Send, or raise `TransientSendError` / `PermanentSendError`."""
        ...

    def find(self, key: str) -> Receipt | None:
        """The receipt of an earlier send of `key`, or None if there was none.

        Raises:
            TransientSendError: the provider cannot tell right now.
        """
        ...


@dataclass
class Dispatcher:
    store: SqlStore
    flows: FlowRegistry
    templates: TemplateSet
    connectors: Mapping[Channel, Connector]
    clock: Clock
    org: Organisation
    owner: str = "dispatcher"
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=30)
    batch: int = 100
    concurrency: int = 1
    rng: random.Random = field(default_factory=random.Random)

    def tick(self) -> int:
        """Claim what is due now and dispatch it; returns how many were handled."""
        now = self.clock.now()
        with self.store.holding_connection():
            claims = self.store.claim_due(now, self.owner, now + self.lease, self.batch)
            if claims:
                # One read for the whole batch: patients, consent, recent sends, journeys.
                facts = self.store.sending_facts(
                    [c.message for c in claims], now - self._longest_cap
                )
                if self.concurrency > 1 and len(claims) > 1:
                    self._dispatch_concurrently(claims, facts)
                else:
                    for claim in claims:
                        self._dispatch_guarded(claim, facts)
        return len(claims)

    def _dispatch_concurrently(self, claims: Sequence[Claim], facts: SendingFacts) -> None:
        """Send a batch on threads, each recipient's messages in order on one of them."""
        groups: dict[tuple[str, str], list[Claim]] = {}
        for claim in claims:
            recipient = claim.message.recipient
            groups.setdefault((recipient.patient_id, str(recipient)), []).append(claim)

        def run(group: list[Claim]) -> None:
            with self.store.holding_connection():
                for claim in group:
                    self._dispatch_guarded(claim, facts)

        with ThreadPoolExecutor(min(self.concurrency, len(groups)), "dispatch-send") as pool:
            futures = [pool.submit(run, group) for group in groups.values()]
        for future in futures:
            future.result()  # a StoreError stops the tick as it does unthreaded

    def _dispatch_guarded(self, claim: Claim, facts: SendingFacts) -> None:
        """The per-message boundary: one message that breaks does not stop the others."""
        try:
            self.dispatch(claim, facts)
        except StoreError:
            raise  # the store is down for every message alike: the loop waits and retries
        except Exception as exc:  # noqa: BLE001 - keep the message's outcome, log the type, go on
            log.error(
                "dispatch.failed",
                extra={"message_key": claim.message.key, "error": exc.__class__.__name__},
            )
            self.store.finish(
                claim.message,
                self.owner,
                self.clock.now(),
                "failed",
                f"dispatch_error:{exc.__class__.__name__}",
                attempt_outcome="failed",
            )

    @cached_property
    def _longest_cap(self) -> timedelta:
        caps = [
            cap.per for flow in self.flows.versions.values() for cap in flow.frequency_caps.values()
        ]
        return max(caps, default=timedelta(0))

    def dispatch(self, claim: Claim, facts: SendingFacts | None = None) -> None:
        """Dispatch one claimed message (`facts`: what `tick` read for its batch)."""
        message = claim.message
        if claim.status == "sending" and self._settled_after_crash(claim):
            return
        now = self.clock.now()
        if facts is None:
            facts = self.store.sending_facts([message], now - self._longest_cap)
        flow = self.flows.version(message.flow_id, message.flow_version)
        patient = facts.patients.get(message.recipient.patient_id)
        contact = contact_for(patient, message.recipient) if patient else None
        who = (message.recipient.patient_id, str(message.recipient))
        consent = facts.consent.get(who, {})
        sent = facts.sent.setdefault(who, {})
        verdict = decide(message, flow, SendContext(contact, consent, sent), now)
        if isinstance(verdict, Defer):
            self.store.reschedule(
                message, self.owner, now, verdict.until, f"deferred:{verdict.reason}"
            )
        elif isinstance(verdict, Suppress):
            self.store.finish(message, self.owner, now, "suppressed", verdict.reason)
        elif isinstance(verdict, Expire):
            self.store.finish(message, self.owner, now, "expired", verdict.reason)
        else:
            assert contact is not None and patient is not None
            usable, _ = contactable(message.channels, contact, consent)
            fallbacks = [c for c in usable if c is not verdict.channel]
            relationship = next(
                (
                    c.relationship
                    for c in patient.caregivers
                    if c.id == message.recipient.caregiver_id
                ),
                None,
            )
            journey = facts.journeys.get((who[0], message.flow_id, message.flow_version))
            channel = self._send(
                message, verdict, [verdict.channel, *fallbacks], contact, relationship, journey
            )
            if channel is not None:
                sent.setdefault(channel, []).append(now)

    def _send(
        self,
        message: ScheduledMessage,
        verdict: Send,
        channels: list[Channel],
        contact: Contact,
        relationship: str | None,
        journey: Journey | None,
    ) -> Channel | None:
        """Hand the message to the first channel that takes it; the channel that did, if any."""
        reason = "language_fallback" if verdict.language_fallback else None
        last_error = "no_channel"
        final = "failed"
        for channel in channels:
            now = self.clock.now()
            connector = self.connectors.get(channel)
            to = contact.address(channel)
            if connector is None or not to:
                continue
            context = render_context(
                message,
                journey,
                channel=channel,
                language=verdict.language,
                timezone=message.timezone,
                caregiver_relationship=relationship,
                org=self.org,
            )
            try:
                rendered = self.templates.render(
                    channel, verdict.language, message.template, context
                )
            except TemplateError:
                log.error(
                    "dispatch.template_failed",
                    extra={"message_key": message.key, "channel": channel.value},
                )
                last_error = "template_error"
                continue
            attempt = self.store.begin_send(message.key, self.owner, channel, now)
            if attempt is None:
                return None  # cancelled meanwhile, or another claimer took it over
            outgoing = Outgoing(
                message.key, channel, str(to), rendered.body, rendered.subject, rendered.html
            )
            try:
                receipt = connector.send(outgoing)
            except TransientSendError as exc:
                self._retry(message, attempt, exc)
                return None
            except AmbiguousSendError:
                # It may have gone: never resend blindly; a callback or `find` settles it.
                self.store.hold(message.key, self.owner, now + self.backoff, "reconcile:unknown")
                log.warning(
                    "dispatch.outcome_unknown",
                    extra={"message_key": message.key, "channel": channel.value},
                )
                return None
            except PermanentSendError as exc:
                # This channel cannot carry it: the next usable one may.
                if isinstance(exc, RecipientOptedOutError):
                    final, last_error = "suppressed", "consent:provider_opt_out"
                else:
                    final, last_error = "failed", f"permanent:{exc.__class__.__name__}"
                self.store.unsend(message.key, self.owner, now, "failed", str(exc)[:300])
                continue
            self.store.finish(
                message,
                self.owner,
                self.clock.now(),
                "sent",
                reason,
                channel=channel,
                language=verdict.language,
                provider_id=receipt.provider_id,
                attempt_outcome="sent",
            )
            log.info(
                "dispatch.sent",
                extra={
                    "message_key": message.key,
                    "flow": message.flow_id,
                    "stage": message.stage_id,
                    "message_id": message.message_id,
                    "channel": channel.value,
                },
            )
            return channel
        self.store.finish(message, self.owner, self.clock.now(), final, last_error)
        return None

    def _retry(self, message: ScheduledMessage, attempts: int, error: SendError) -> None:
        now = self.clock.now()
        if attempts >= self.max_attempts:
            self.store.finish(
                message,
                self.owner,
                now,
                "failed",
                f"retries_exhausted:{error.__class__.__name__}",
                attempt_outcome="failed",
                error=str(error)[:300],
            )
            return
        # Exponential backoff with full jitter: retries from many workers spread out.
        ceiling = self.backoff * (2 ** (attempts - 1))
        delay = timedelta(seconds=self.rng.uniform(0.5, 1.0) * ceiling.total_seconds())
        self.store.reschedule(
            message,
            self.owner,
            now,
            now + delay,
            f"retry:{error.__class__.__name__}",
            attempt_outcome="retry",
            error=str(error)[:300],
        )

    def _settled_after_crash(self, claim: Claim) -> bool:
        """For a message caught mid-send: record what the provider says happened.

        Returns True when the message is settled (it was sent, or we cannot
        tell yet and will ask again later); False when it was not sent and
        may be dispatched now.
        """
        message = claim.message
        now = self.clock.now()
        channel = Channel(claim.channel) if claim.channel else None
        connector = self.connectors.get(channel) if channel else None
        if connector is None:
            # Nobody can say whether it went: failing it is the honest record.
            self.store.finish(message, self.owner, now, "failed", "reconcile:no_connector")
            return True
        try:
            receipt = connector.find(message.key)
        except TransientSendError:
            # Still "sending": ask again when this hold runs out, never resend blindly.
            self.store.hold(message.key, self.owner, now + self.backoff, "reconcile:unknown")
            return True
        if receipt is None:
            self.store.unsend(message.key, self.owner, now, "not_sent", None)
            return False
        self.store.finish(
            message,
            self.owner,
            now,
            "sent",
            "reconciled",
            channel=channel,
            provider_id=receipt.provider_id,
            attempt_outcome="sent",
        )
        return True
