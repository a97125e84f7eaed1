"""HL7 v2 intake: raw messages in, canonical events committed, an ACK for each out.

For a batch of raw messages, in this order:

1. keep every raw message in the inbound archive (committed): what we
   acknowledge is never only in memory;
2. parse and map each one; a message that cannot be used is kept in the
   rejected inputs with its reason and answered AE or AR with an ERR segment;
3. run the events through the `EventProcessor`, one transaction;
4. settle the archive rows, then answer AA: only after the commit.

A store failure before the commit answers AE (application error: resend),
so a sender never takes an AA for something that was not stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.clock import Clock
from orchestrator.errors import StoreError
from orchestrator.event import Event
from orchestrator.ports import EventSink, InboundArchive, RejectedInputs, Settlement

from .hl7_ack import AckCode, Envelope, build_ack, envelope_of
from .hl7_message import APPLICATION_ERROR, Hl7Error, Hl7Message, Location, decode
from .hl7v2 import Hl7Config, map_message

__all__ = ["Hl7Intake", "Reply"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one message: the ACK text and what became of it."""

    ack: str
    code: AckCode
    status: str  # accepted, duplicate, rejected, failed
    event_id: str | None = None
    error: Hl7Error | None = None


@dataclass
class Hl7Intake:
    processor: EventSink
    archive: InboundArchive
    store: RejectedInputs
    clock: Clock
    config: Hl7Config
    source: str = "mllp"

    def handle(self, raws: Sequence[bytes]) -> list[Reply]:
        """Take a batch of raw messages; one reply per message, in order."""
        now = self.clock.now()
        texts = [decode(raw) for raw in raws]
        envelopes = [envelope_of(text) for text in texts]
        try:
            ids = self.archive.keep("hl7v2", raws, now)
        except StoreError as exc:
            log.error("hl7.archive_failed", extra={"error": exc.__class__.__name__})
            return [self._failed(envelope, now) for envelope in envelopes]
        events: list[tuple[int, Event]] = []
        replies: list[Reply | None] = [None] * len(raws)
        for i, text in enumerate(texts):
            try:
                events.append((i, map_message(Hl7Message(text), self.config)))
            except Hl7Error as exc:
                replies[i] = self._rejected(envelopes[i], now, exc)
            except Exception as exc:  # noqa: BLE001 - one message must not fail its batch
                log.error("hl7.mapping_failed", extra={"error": exc.__class__.__name__})
                error = Hl7Error(
                    Location("MSH"), "the message could not be mapped", APPLICATION_ERROR
                )
                replies[i] = self._rejected(envelopes[i], now, error)
        try:
            results = self.processor.process([e for _, e in events]) if events else []
            settlements: list[Settlement] = []
            for (i, event), result in zip(events, results, strict=True):
                if result.status == "rejected":
                    error = Hl7Error(
                        Location("MSH", 1, 9), "; ".join(result.errors), APPLICATION_ERROR
                    )
                    replies[i] = Reply(
                        build_ack(envelopes[i], "AE", now, error), "AE", "rejected", event.id, error
                    )
                else:
                    replies[i] = Reply(
                        build_ack(envelopes[i], "AA", now), "AA", result.status, event.id
                    )
            for i, reply in enumerate(replies):
                assert reply is not None
                reason = None
                if reply.error is not None:
                    reason = f"{reply.error.location}: {reply.error.problem}"
                    self.store.reject(raws[i], self.source, reason, now)
                settlements.append(Settlement(ids[i], reply.status, reply.event_id, reason))
            self.archive.settle(settlements)
        except StoreError as exc:
            # The archive rows stay `received`: the sender resends, or they are replayed.
            log.error("hl7.store_failed", extra={"error": exc.__class__.__name__})
            return [self._failed(envelope, now) for envelope in envelopes]
        for reply in replies:
            assert reply is not None
            log.info(
                "hl7.acknowledged",
                extra={"event_id": reply.event_id, "ack": reply.code, "status": reply.status},
            )
        return [r for r in replies if r is not None]

    @staticmethod
    def _rejected(envelope: Envelope, now: datetime, error: Hl7Error) -> Reply:
        code: AckCode = "AR" if error.reject else "AE"
        return Reply(build_ack(envelope, code, now, error), code, "rejected", None, error)

    def _failed(self, envelope: Envelope, now: datetime) -> Reply:
        error = Hl7Error(
            Location("MSH"), "the message could not be stored; resend it", APPLICATION_ERROR
        )
        return Reply(build_ack(envelope, "AE", now, error), "AE", "failed", None, error)
