"""HL7 v2 intake: raw messages in, canonical events committed, an ACK for each out.

For a batch of raw messages, in this order:

1. keep every raw message in the inbound archive (committed): what we
   acknowledge is never only in memory;
2. parse and map each one; a message that cannot be used is answered AE or
   AR with an ERR segment;
3. hand them all to the intake (source `mllp`): the events go through the
   processor in one transaction, and every message refused, here or by the
   processor, is kept once in the rejected inputs;
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
from orchestrator.ports import EventIntake, InboundArchive, Input, Settlement

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
    intake: EventIntake
    archive: InboundArchive
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
        inputs: list[Input] = []
        errors: list[Hl7Error | None] = []
        for raw, text in zip(raws, texts, strict=True):
            try:
                inputs.append(Input(raw, map_message(Hl7Message(text), self.config)))
                errors.append(None)
                continue
            except Hl7Error as exc:
                unusable = exc
            except Exception as exc:  # noqa: BLE001 - one message must not fail its batch
                log.error("hl7.mapping_failed", extra={"error": exc.__class__.__name__})
                unusable = Hl7Error(
                    Location("MSH"), "the message could not be mapped", APPLICATION_ERROR
                )
            inputs.append(Input.refused(raw, f"{unusable.location}: {unusable.problem}"))
            errors.append(unusable)
        replies: list[Reply] = []
        try:
            results = self.intake.take(self.source, inputs)
            settlements: list[Settlement] = []
            for n, (error, result) in enumerate(zip(errors, results, strict=True)):
                if error is not None:
                    reply = self._rejected(envelopes[n], now, error)
                elif result.status == "rejected":
                    error = Hl7Error(
                        Location("MSH", 1, 9), "; ".join(result.errors), APPLICATION_ERROR
                    )
                    reply = Reply(
                        build_ack(envelopes[n], "AE", now, error),
                        "AE",
                        "rejected",
                        result.id,
                        error,
                    )
                else:
                    reply = Reply(
                        build_ack(envelopes[n], "AA", now), "AA", result.status, result.id
                    )
                reason = f"{error.location}: {error.problem}" if error is not None else None
                settlements.append(Settlement(ids[n], reply.status, reply.event_id, reason))
                replies.append(reply)
            self.archive.settle(settlements)
        except StoreError as exc:
            # The archive rows stay `received`: the sender resends, or they are replayed.
            log.error("hl7.store_failed", extra={"error": exc.__class__.__name__})
            return [self._failed(envelope, now) for envelope in envelopes]
        for reply in replies:
            log.info(
                "hl7.acknowledged",
                extra={"event_id": reply.event_id, "ack": reply.code, "status": reply.status},
            )
        return replies

    @staticmethod
    def _rejected(envelope: Envelope, now: datetime, error: Hl7Error) -> Reply:
        code: AckCode = "AR" if error.reject else "AE"
        return Reply(build_ack(envelope, code, now, error), code, "rejected", None, error)

    def _failed(self, envelope: Envelope, now: datetime) -> Reply:
        error = Hl7Error(
            Location("MSH"), "the message could not be stored; resend it", APPLICATION_ERROR
        )
        return Reply(build_ack(envelope, "AE", now, error), "AE", "failed", None, error)
