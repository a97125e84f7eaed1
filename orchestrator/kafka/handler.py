"""The batch handler: consumed records through the event processor, poison set aside.

The Faust agent hands it each batch it takes; it parses every record, keeps
poison (not JSON, not an event, an unknown type, an event the engine
rejects) as rejected input and returns it as dead letters, and runs the
events through the same `EventProcessor` as the embedded runtime, in one
transaction. The caller acknowledges the batch only after this returns, so
offsets are committed after the database commit.

Within a topic one patient's events arrive in order (they are keyed by the
patient id). Across topics they may not: a worker may read a patient's
intake events before the booking that came first. Within a batch each
patient's events are therefore merged by the time they occurred, keeping
each topic's own order.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..clock import Clock
from ..errors import InputError
from ..event import Event
from ..event_schema import parse_event_json
from ..runtime.processor import EventProcessor, EventResult
from ..store import SqlStore
from .deadletter import DeadLetter, Record

__all__ = ["BatchHandler", "BatchOutcome", "in_patient_order"]

log = logging.getLogger(__name__)

SOURCE = "kafka"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: tuple[EventResult, ...]
    dead: tuple[DeadLetter, ...]


@dataclass
class BatchHandler:
    processor: EventProcessor
    store: SqlStore
    clock: Clock
    default_region: str = "US"

    def handle(self, records: Sequence[Record]) -> BatchOutcome:
        """Process a batch; the dead letters it produced (already kept as rejected input).

        Raises:
            StoreError: the store is unreachable or the transaction failed; nothing
                was committed and the batch must be handled again.
        """
        dead: list[DeadLetter] = []
        events: list[tuple[Event, Record]] = []
        for record in records:
            try:
                event = parse_event_json(record.value or b"", default_region=self.default_region)
            except InputError as exc:
                letter = DeadLetter(record, f"{record.topic}: {exc}")
                log.warning(
                    "kafka.poison",
                    extra={"where": letter.where(), "error": "InputError"},
                )
                self.store.reject(record.value or b"", SOURCE, letter.reason, self.clock.now())
                dead.append(letter)
                continue
            events.append((event, record))
        ordered = in_patient_order(events)
        results = self.processor.process([event for event, _ in ordered]) if ordered else []
        for (_, record), result in zip(ordered, results, strict=True):
            if result.status == "rejected":
                # The processor kept it as rejected input already.
                reason = f"event {result.id}: " + "; ".join(result.errors)
                dead.append(DeadLetter(record, reason))
        return BatchOutcome(tuple(results), tuple(dead))


def in_patient_order(events: Sequence[tuple[Event, Record]]) -> list[tuple[Event, Record]]:
    """Each patient's events merged across topics by when they occurred.

    Each topic's order is kept as it is (it is the producer's order); only
    where two topics interleave does the occurrence time decide.
    """
    by_patient: dict[str, dict[str, list[tuple[Event, Record]]]] = {}
    for event, record in events:
        by_patient.setdefault(event.patient.id, {}).setdefault(record.topic, []).append(
            (event, record)
        )
    ordered: list[tuple[Event, Record]] = []
    for topics in by_patient.values():
        if len(topics) == 1:
            ordered += next(iter(topics.values()))
        else:
            ordered += heapq.merge(*topics.values(), key=lambda item: item[0].occurred_at)
    return ordered
