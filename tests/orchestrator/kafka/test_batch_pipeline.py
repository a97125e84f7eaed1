"""The agent parses the next batch while the one before is in the database (issue 16).

Parsing is CPU only and the store's thread mostly waits on PostgreSQL: the
agent's parser runs one batch ahead of the batch processor, and batches are
still stored and acknowledged in the order they were read.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from orchestrator.kafka.app import AgentOptions, _parse_batches, _process_batches
from orchestrator.kafka.deadletter import Record
from orchestrator.kafka.handler import BatchOutcome, ParsedBatch


@dataclass
class SlowStore:
    """Stores a batch only once the next one is parsed (or after a deadlock guard)."""

    parsed: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
    overlapped: list[bool] = field(default_factory=list)
    next_parsed: threading.Event = field(default_factory=threading.Event)

    def parse(self, records: list[Record]) -> ParsedBatch:
        self.parsed.append(records[0].offset)
        if len(self.parsed) > len(self.stored) + 1:
            self.next_parsed.set()
        return ParsedBatch(tuple((SimpleNamespace(), r) for r in records))  # type: ignore[misc]

    def store(self, parsed: ParsedBatch) -> BatchOutcome:
        first = parsed.taken[0][1].offset
        if len(self.stored) == 0:
            # Waits as a batch waits on the database; the guard only ends a deadlock.
            self.overlapped.append(self.next_parsed.wait(10))
        self.stored.append(first)
        return BatchOutcome((), ())


class Stream:
    def __init__(self, expected: int) -> None:
        self.acked: list[int] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)
        if len(self.acked) == self.expected:
            self.done.set()


def event(offset: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(
            topic="patient.scheduling", partition=0, offset=offset, key=b"p-1", value=b"{}"
        )
    )


def test_the_next_batch_is_parsed_while_the_one_before_is_stored_and_order_is_kept() -> None:
    handler = SlowStore()
    options = AgentOptions(broker="kafka://127.0.0.1:9", batch=2, batch_seconds=0.0)

    async def run() -> Stream:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for offset in range(6):
            queue.put_nowait(event(offset))
        parsed: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        stream = Stream(expected=6)
        tasks = [
            asyncio.ensure_future(_parse_batches(queue, parsed, handler, options)),  # type: ignore[arg-type]
            asyncio.ensure_future(
                _process_batches(stream, parsed, handler, None, options)  # type: ignore[arg-type]
            ),
        ]
        try:
            await asyncio.wait_for(stream.done.wait(), 20)
        finally:
            for task in tasks:
                task.cancel()
        return stream

    stream = asyncio.run(run())

    assert handler.overlapped == [True]
    assert handler.parsed == [0, 2, 4]
    assert handler.stored == [0, 2, 4]
    assert stream.acked == [0, 1, 2, 3, 4, 5]
