"""The batch handler: consumed records through the event processor, poison set aside.

The Faust agent hands it each batch it takes; it parses every record
(`parse`: no store, so the agent parses the next batch while this one is in
the database) and hands the batch to the runtime's `Intake` (source `kafka`,
`store`), which runs the
events through the one `EventProcessor` in one transaction and keeps poison
(not JSON, not an event, an unknown type, an event the engine rejects) as
rejected input; the handler returns that poison as dead letters. The caller acknowledges the batch only after this returns, so
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

from ..event import Event
from ..ports import EventIntake, EventResult, Input
from ..runtime.intake import parse_json
from .deadletter import DeadLetter, Record

__all__ = ["BatchHandler", "BatchOutcome", "ParsedBatch", "in_patient_order"]

log = logging.getLogger(__name__)

SOURCE = "kafka"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: tuple[EventResult, ...]
    dead: tuple[DeadLetter, ...]


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """A batch's records parsed, poison first, then the events in patient order."""

    taken: tuple[tuple[Input, Record], ...]


@dataclass
class BatchHandler:
    intake: EventIntake
    default_region: str = "US"

    def handle(self, records: Sequence[Record]) -> BatchOutcome:
        """Process a batch; the dead letters it produced (already kept as rejected input).

        Raises:
            StoreError: the store is unreachable or the transaction failed; nothing
                was committed and the batch must be handled again.
        """
        return self.store(self.parse(records))

    def parse(self, records: Sequence[Record]) -> ParsedBatch:
        """Parse a batch's records (CPU only: nothing is read or written)."""
        poison: list[tuple[Input, Record]] = []
        events: list[tuple[Event, Record]] = []
        for record in records:
            parsed = parse_json(
                record.value or b"", default_region=self.default_region, where=f"{record.topic}: "
            )
            if parsed.event is None:
                log.warning(
                    "kafka.poison",
                    extra={"where": DeadLetter(record, "").where(), "error": "InputError"},
                )
                poison.append((parsed, record))
            else:
                events.append((parsed.event, record))
        ordered = [
            (Input(record.value, event), record) for event, record in in_patient_order(events)
        ]
        return ParsedBatch(tuple(poison + ordered))

    def store(self, parsed: ParsedBatch) -> BatchOutcome:
        """Process a parsed batch in one transaction; as `handle`.

        Raises:
            StoreError: as `handle`: the batch must be stored again.
        """
        taken = parsed.taken
        results = self.intake.take(SOURCE, [given for given, _ in taken]) if taken else []
        dead: list[DeadLetter] = []
        processed: list[EventResult] = []
        for (given, record), result in zip(taken, results, strict=True):
            if given.event is None:
                dead.append(DeadLetter(record, given.reason))
                continue
            processed.append(result)
            if result.status == "rejected":
                reason = f"event {result.id}: " + "; ".join(result.errors)
                dead.append(DeadLetter(record, reason))
        return BatchOutcome(tuple(processed), tuple(dead))


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
