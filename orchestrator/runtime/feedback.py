"""Provider feedback as canonical events: opt-outs, opt-ins and replies.

A STOP text, Twilio's 21610 refusal and a SendGrid unsubscribe all become
`consent.opted_out` events (with `attributes.channel`) through the intake
(source `feedback:<provider>`), so they land in the one consent record the send-time policies
read. Replies become `message.replied` events that flows route on
(`attributes.reply`). Event ids are derived from the provider's own ids, so a
callback delivered twice records once. A webhook hands them to the intake
at once; a connector's send thread hands them to an `IntakeQueue`, which
keeps them in the store for the runtime to take between dispatch ticks: they
count as taken, and are logged `feedback.queued`, not `feedback.recorded`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from ..clock import Clock
from ..event import Channel, Event, EventType, JSONValue, Patient
from ..ports import Addressee, EventIntake, Recipients
from .intake import events_of

__all__ = ["Feedback"]

log = logging.getLogger(__name__)


@dataclass
class Feedback:
    intake: EventIntake
    ledger: Recipients
    clock: Clock

    def consent_for_message(
        self,
        key: str,
        channel: Channel,
        *,
        granted: bool,
        source: str,
        ref: str,
        at: datetime | None = None,
    ) -> int:
        """Record consent for the recipient of message `key`; how many were taken (or queued).

        `at` is when the person decided, as the provider says (else now): a
        decision delivered late must not override a later one.
        """
        recipient = self.ledger.recipient_of(key)
        if recipient is None:
            log.warning("feedback.unknown_message", extra={"message_key": key, "source": source})
            return 0
        return self._consent([recipient], channel, granted=granted, source=source, ref=ref, at=at)

    def consent_for_phone(self, phone: str, *, granted: bool, source: str, ref: str) -> int:
        """Record SMS consent for everyone reached at `phone`; how many were taken (or queued)."""
        recipients = self.ledger.recipients_by_phone(phone)
        if not recipients:
            log.info("feedback.unknown_sender", extra={"source": source})
        return self._consent(recipients, Channel.SMS, granted=granted, source=source, ref=ref)

    def replied(self, phone: str, reply: str, *, source: str, ref: str) -> int:
        """A `message.replied` event for everyone reached at `phone`; how many were taken."""
        recipients = self.ledger.recipients_by_phone(phone)
        events = [
            self._event(
                EventType.MESSAGE_REPLIED,
                r,
                source,
                ref,
                {"channel": Channel.SMS.value, "reply": reply},
            )
            for r in recipients
        ]
        return self._take(source, events)

    def _consent(
        self,
        recipients: list[Addressee],
        channel: Channel,
        *,
        granted: bool,
        source: str,
        ref: str,
        at: datetime | None = None,
    ) -> int:
        kind = EventType.CONSENT_OPTED_IN if granted else EventType.CONSENT_OPTED_OUT
        events = [
            self._event(kind, r, source, ref, {"channel": channel.value}, at) for r in recipients
        ]
        return self._take(source, events)

    def _event(
        self,
        kind: EventType,
        recipient: Addressee,
        source: str,
        ref: str,
        attributes: dict[str, JSONValue],
        at: datetime | None = None,
    ) -> Event:
        if recipient.caregiver_id is not None:
            attributes = attributes | {"caregiver_id": recipient.caregiver_id}
        seed = f"{source}|{ref}|{kind.value}|{recipient.patient.id}|{recipient.recipient}"
        digest = hashlib.sha256(seed.encode()).hexdigest()[:32]
        return Event(
            id=f"{source}-{digest}",
            type=kind,
            occurred_at=at or self.clock.now(),
            source=source,
            # The id alone: the snapshot read here is a copy, not news about the
            # patient, and restated under this event's time it would outrank a
            # newer fact that arrives late (or lands between the read and this event).
            patient=Patient(recipient.patient.id),
            attributes=attributes,
        )

    def _take(self, source: str, events: list[Event]) -> int:
        """Hand the events to the intake; how many it took (recorded, or queued to be)."""
        if not events:
            return 0
        taken = 0
        for result in self.intake.take(f"feedback:{source}", events_of(events)):
            if result.status == "rejected":
                log.warning("feedback.rejected", extra={"event_id": result.id})
                continue
            taken += 1
            name = "feedback.queued" if result.status == "queued" else "feedback.recorded"
            log.info(name, extra={"event_id": result.id, "status": result.status})
        return taken
