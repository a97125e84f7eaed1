"""The intake: what every transport received, kept or processed, one result per input.

HTTP `/events`, FHIR, HL7 v2 over MLLP, the Kafka batch handler, provider
webhooks and provider feedback all take the same steps, written here once:

1. the transport parses its input into `Input`s (an event, or why not);
   `parse_document` and `parse_json` do it for the canonical event JSON;
2. the events go through the `EventProcessor` in one transaction (with an
   import hold when the batch belongs to an open import);
3. every input that was refused, by the transport or by the processor, is
   kept in the rejected inputs exactly once, under the transport's source;
4. a result per input comes back, in input order.

What is kept is kept after the processor commits: a batch the store failed
on is handled again whole, and its refusals are not kept twice.

`IntakeQueue` defers the same work: a send thread that learns of an opt-out
(Twilio 21610) queues the event, and the runtime takes it between ticks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from ..errors import InputError
from ..event import Event, bound_id
from ..event_schema import dump_event, parse_event, parse_event_json
from ..limits import unsafe_text
from ..ports import EventResult, EventSink, ImportHold, Input, RejectedInputs

__all__ = ["Intake", "IntakeQueue", "events_of", "parse_document", "parse_json"]

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
            StoreError: the batch was not committed (nothing was kept either).
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
        now = self.clock.now()
        answered: list[EventResult] = []
        for given, result in zip(inputs, results, strict=True):
            assert result is not None
            if result.status == "rejected":
                self.store.reject(_body(given), source, _reason(given, result), now)
            answered.append(result)
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
    """Inputs handed over now and taken later, on the runtime's thread (see `drain`).

    A connector's send thread must not run the processor: it holds a claim,
    and the processor's transaction would wait behind (or deadlock with) the
    dispatcher's. `take` only queues; `drain` takes everything queued.
    """

    intake: Intake
    _queued: list[tuple[str, tuple[Input, ...]]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(
        self, source: str, inputs: Sequence[Input], *, hold: ImportHold | None = None
    ) -> list[EventResult]:
        """Queue the inputs; no results yet (`drain` decides them)."""
        if hold is not None:
            raise ValueError("an import hold is for a batch taken at once, not a queued one")
        with self._lock:
            self._queued.append((source, tuple(inputs)))
        return []

    def __len__(self) -> int:
        with self._lock:
            return len(self._queued)

    def drain(self) -> int:
        """Take every queued batch, oldest first; how many inputs were taken.

        A batch the store fails on goes back to the front of the queue.
        """
        with self._lock:
            batches, self._queued = self._queued, []
        taken = 0
        try:
            while batches:
                source, inputs = batches[0]
                for result in self.intake.take(source, inputs):
                    log.info(
                        "intake.deferred", extra={"event_id": result.id, "status": result.status}
                    )
                taken += len(inputs)
                batches.pop(0)
        finally:
            if batches:
                with self._lock:
                    self._queued[:0] = batches
        return taken


def events_of(inputs: Sequence[Event]) -> list[Input]:
    """Events built in-process (provider feedback, tests) as inputs."""
    return [Input(None, event) for event in inputs]
