"""The intake: what every transport received, kept or processed, one result per input.

HTTP `/events`, FHIR, HL7 v2 over MLLP, the Kafka batch handler, provider
webhooks and provider feedback all take the same steps, written here once:

1. the transport parses its input into `Input`s (an event, or why not);
   `parse_document` and `parse_json` do it for the canonical event JSON;
2. the events go through the `EventProcessor` in one transaction (with an
   import hold when the batch belongs to an open import);
3. every input that was refused, by the transport or by the processor, is
   kept in the rejected inputs, all of the batch's in one transaction after
   the processor's commit;
4. a result per input comes back, in input order.

So a batch either raises `StoreError` with none of its refusals kept (the
processor failed, or the refusals could not be kept: its events may then be
committed already, and a retry answers them `duplicate`), or answers with
each refusal kept once. A caller that retries a failed batch whole keeps
each refusal once.

`IntakeQueue` defers the same work: a send thread that learns of an opt-out
(Twilio 21610) keeps the event, committed, in the inbound archive, and the
runtime takes it between ticks (`drain`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from ..clock import Clock
from ..errors import InputError, StoreError, UnstorableError
from ..event import Event, bound_id
from ..event_schema import dump_event, parse_event, parse_event_json
from ..limits import unsafe_text
from ..ports import (
    ArchivedMessage,
    EventResult,
    EventSink,
    ImportHold,
    InboundArchive,
    Input,
    RejectedInputs,
    Settlement,
)

__all__ = ["DEFERRED", "Intake", "IntakeQueue", "events_of", "parse_document", "parse_json"]

# The inbound archive's protocol prefix for what `IntakeQueue` keeps: `deferred:<source>`.
DEFERRED = "deferred:"

log = logging.getLogger(__name__)


@dataclass
class Intake:
    processor: EventSink
    store: RejectedInputs
    clock: Clock

    def take(
        self, source: str, inputs: Sequence[Input], *, hold: ImportHold | None = None
    ) -> list[EventResult]:
        """Process the inputs' events and keep what was refused; a result per input, in order.

        Raises:
            StoreError: no refusal was kept (the events may be committed: see the module).
        """
        results: list[EventResult | None] = [
            None if i.event is not None else EventResult(i.id, "rejected", i.problems)
            for i in inputs
        ]
        taken = [(n, i.event) for n, i in enumerate(inputs) if i.event is not None]
        if taken:
            processed = self.processor.process([e for _, e in taken], hold=hold)
            for (n, _), outcome in zip(taken, processed, strict=True):
                results[n] = outcome
        answered: list[EventResult] = []
        for result in results:
            assert result is not None  # every input was answered, refused or processed
            answered.append(result)
        refused = [
            (_body(given), _reason(given, result))
            for given, result in zip(inputs, answered, strict=True)
            if result.status == "rejected"
        ]
        # One transaction for all of them: a blip keeps none, and the retry keeps each once.
        self.store.reject_many(source, refused, self.clock.now())
        return answered


def _body(given: Input) -> bytes:
    if given.body is not None:
        return given.body
    assert given.event is not None  # a refused input always carries its body
    return json.dumps(dump_event(given.event)).encode()


def _reason(given: Input, result: EventResult) -> str:
    if given.event is None:
        return given.reason
    return f"event {result.id}: " + "; ".join(result.errors)


def parse_document(where: str, data: Any, *, default_region: str, body: bytes) -> Input:
    """One decoded JSON document as an event, or refused with the schema's problems."""
    try:
        return Input(body, parse_event(data, default_region=default_region))
    except InputError as exc:
        return Input.refused(body, f"{where}: {exc}", exc.problems, _id_of(data))


def parse_json(body: bytes, *, default_region: str, where: str = "") -> Input:
    """One JSON document, as bytes, as an event; refused when unreadable or not an event."""
    try:
        return Input(body, parse_event_json(body, default_region=default_region))
    except InputError as exc:
        return Input.refused(body, f"{where}{exc}", exc.problems)


def _id_of(data: Any) -> str | None:
    """The id a refused event was sent with, as the store would keep it; None if unusable."""
    value = data.get("id") if isinstance(data, Mapping) else None
    if not isinstance(value, str) or unsafe_text(value) is not None:
        return None  # a lone surrogate cannot even be written in the answer
    return bound_id(value)


@dataclass
class IntakeQueue:
    """Inputs kept now and taken later, on the runtime's thread (see `drain`).

    A connector's send thread must not run the processor: it holds a claim,
    and the processor's transaction would wait behind (or deadlock with) the
    dispatcher's. `take` only keeps each event, committed, in the inbound
    archive (protocol `deferred:<source>`, its canonical JSON), so neither a
    crash nor a stop loses it; `drain` takes what the archive holds, through
    the intake, and settles it. The dispatcher holds no transaction while it
    sends, so the send thread's one insert does not wait on it.
    """

    intake: Intake
    archive: InboundArchive
    default_region: str = "US"
    # The most archived inputs one `drain` takes: a long backlog waits, the dispatcher does not.
    batch: int = 100

    def take(
        self, source: str, inputs: Sequence[Input], *, hold: ImportHold | None = None
    ) -> list[EventResult]:
        """Keep the inputs' events to take later (`queued`); a refused input is kept at once.

        Raises:
            StoreError: nothing was queued.
        """
        if hold is not None:
            raise ValueError("an import hold is for a batch taken at once, not a queued one")
        events = [i.event for i in inputs if i.event is not None]
        bodies = [json.dumps(dump_event(e)).encode() for e in events]
        self.archive.keep(DEFERRED + source, bodies, self.intake.clock.now())
        refused = [i for i in inputs if i.event is None]
        if refused:
            self.intake.take(source, refused)
        return [
            EventResult(i.id, "rejected", i.problems)
            if i.event is None
            else EventResult(i.event.id, "queued")
            for i in inputs
        ]

    def drain(self) -> int:
        """Take what the archive holds queued, oldest first, up to `batch`; how many.

        A batch the store fails on (`StoreError`) stays queued for the next
        drain, which raises. Any other failure, or a value the store refuses
        (`UnstorableError`), is the input's own: it is kept as a rejected
        input with its reason and leaves the queue, never retried forever.
        Each input is settled once its events are committed: a crash between
        the two takes it again, and the processor answers it `duplicate`.

        Raises:
            StoreError: the store failed; what is not settled stays queued.
        """
        rows = self.archive.pending(DEFERRED, self.batch)
        for protocol, group in groupby(rows, key=lambda row: row.protocol):
            self._take(protocol.removeprefix(DEFERRED), list(group))
        return len(rows)

    def _take(self, source: str, rows: list[ArchivedMessage]) -> None:
        inputs = [
            parse_json(row.body, default_region=self.default_region, where="deferred: ")
            for row in rows
        ]
        try:
            results = self.intake.take(source, inputs)
        except StoreError as exc:
            if not isinstance(exc, UnstorableError):
                raise  # the store is down: everything waits alike
            self._failed(source, rows, exc)
            return
        except Exception as exc:  # noqa: BLE001 - one poison input must not stop the queue
            self._failed(source, rows, exc)
            return
        self.archive.settle(
            [
                Settlement(row.id, r.status, r.id, "; ".join(r.errors) or None)
                for row, r in zip(rows, results, strict=True)
            ]
        )
        for result in results:
            log.info("intake.deferred", extra={"event_id": result.id, "status": result.status})

    def _failed(self, source: str, rows: list[ArchivedMessage], exc: Exception) -> None:
        if len(rows) > 1:
            for row in rows:  # one at a time: only the poison one is refused
                self._take(source, [row])
            return
        [row] = rows
        reason = f"deferred: {exc.__class__.__name__}"
        log.error("intake.deferred_rejected", extra={"error": exc.__class__.__name__})
        self.intake.store.reject_many(source, [(row.body, reason)], self.intake.clock.now())
        self.archive.settle([Settlement(row.id, "rejected", None, reason)])


def events_of(inputs: Sequence[Event]) -> list[Input]:
    """Events built in-process (provider feedback, tests) as inputs."""
    return [Input(None, event) for event in inputs]
