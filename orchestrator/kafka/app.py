"""The Faust application of the Kafka runtime: one agent over the patient topics.

`build_app` makes the app and its agent. The agent reads `patient.scheduling`,
`patient.intake`, `patient.discharge` and `patient.messaging` (one consumer
group, so workers share the partitions) with manual acknowledgement and feeds
a bounded queue; a parser takes batches off the queue and parses each on a
thread (`BatchHandler.parse`), one batch ahead; a batch processor beside it
stores each parsed batch on another thread (`BatchHandler.store`: the event
loop keeps reading and heartbeating, and the next batch is parsed while this
one waits on the database), publishes the dead letters and waits
for the broker to have them, and only then acknowledges the batch's events.
Faust commits acknowledged offsets every `broker_commit_interval`: at least
once, and a redelivered event is a duplicate to the processor. One agent
instance and one batch processor keep each partition's order.

Journey state lives in the database, not in Faust tables; the app has none.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import Stream
from faust.types import EventT
from mode import CrashingSupervisor

from ..errors import StoreError
from .deadletter import Record
from .handler import BatchHandler, BatchOutcome, ParsedBatch
from .topics import DEADLETTER, EVENT_TOPICS

__all__ = ["AgentOptions", "build_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentOptions:
    broker: str
    group: str = "orchestrator"
    partitions: int = 8
    batch: int = 500
    batch_seconds: float = 0.2
    session_timeout: float = 30.0
    commit_interval: float = 1.0
    retry_seconds: float = 2.0
    datadir: str = "orchestrator-worker-data"


def build_app(handler: BatchHandler, options: AgentOptions) -> faust.App:
    """The Faust app with its agent, not yet started."""
    app = faust.App(
        options.group,
        broker=options.broker,
        datadir=options.datadir,
        store="memory://",
        topic_partitions=options.partitions,
        # `orchestrator topics create` makes the topics; the worker only reads them.
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout,
        broker_heartbeat_interval=max(0.1, options.session_timeout / 10),
        broker_rebalance_timeout=options.session_timeout * 2,
        broker_commit_interval=options.commit_interval,
        broker_commit_every=options.batch,
        producer_acks=-1,
        web_enabled=False,
        stream_wait_empty=False,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(*EVENT_TOPICS, **raw)
    deadletter = app.topic(DEADLETTER, **raw)

    async def agent(stream: faust.StreamT[bytes]) -> None:
        # Reading and processing overlap: one task feeds a queue while the batch
        # before is in the database; events are acknowledged by hand, after commit.
        assert isinstance(stream, Stream)  # noack is on the class, not the protocol
        manual = stream.noack()
        queue: asyncio.Queue[EventT[bytes]] = asyncio.Queue(maxsize=options.batch * 2)
        # One parsed batch waits here while the one before is stored.
        parsed: asyncio.Queue[_Parsed] = asyncio.Queue(maxsize=1)

        async def feed() -> None:
            async for event in manual.events():
                await queue.put(event)

        tasks = {
            asyncio.ensure_future(feed()),
            asyncio.ensure_future(_parse_batches(queue, parsed, handler, options)),
            asyncio.ensure_future(_process_batches(manual, parsed, handler, deadletter, options)),
        }
        try:
            # Both run until stopped; the first to fail fails the agent at once.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()

    # mode types the handler with mypy_extensions arguments mypy does not match here.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(_: Any, *args: Any, **__: Any) -> None:
        # When this worker starts (or stops) reading after a rebalance: for
        # operators, and for bench/kafka.py, which times from the first one.
        partitions = args[0] if args else ()
        log.info("kafka.partitions_assigned", extra={"partitions": len(partitions)})

    # An agent that fails takes the worker down rather than being restarted in
    # place: the events it had not acknowledged are then read again, in order,
    # by whichever worker gets their partitions.
    app.agent(source, name="patient-events", concurrency=1, supervisor_strategy=CrashingSupervisor)(
        agent
    )
    return app


async def _next_batch(
    queue: asyncio.Queue[EventT[bytes]], size: int, within: float
) -> list[EventT[bytes]]:
    """Up to `size` events: waits for the first, then at most `within` seconds for more."""
    batch = [await queue.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(batch) < size:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return batch


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A batch taken off the queue, and its records parsed."""

    events: list[EventT[bytes]]
    parsed: ParsedBatch


async def _parse_batches(
    queue: asyncio.Queue[EventT[bytes]],
    parsed: asyncio.Queue[_Parsed],
    handler: BatchHandler,
    options: AgentOptions,
) -> None:
    """Take batches off the queue and parse each on a thread, in order, one batch ahead."""
    while True:
        batch = await _next_batch(queue, options.batch, options.batch_seconds)
        records = [
            Record(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.key,
                e.message.value,
            )
            for e in batch
        ]
        await parsed.put(_Parsed(batch, await asyncio.to_thread(handler.parse, records)))


async def _process_batches(
    stream: faust.StreamT[bytes],
    queue: asyncio.Queue[_Parsed],
    handler: BatchHandler,
    deadletter: faust.TopicT,
    options: AgentOptions,
) -> None:
    """Take parsed batches off the queue: store, publish dead letters, then acknowledge."""
    loop = asyncio.get_running_loop()
    while True:
        waited = loop.time()
        taken = await queue.get()
        batch = taken.events
        started = loop.time()
        outcome = await _handle_until_stored(handler, taken.parsed, options.retry_seconds)
        handled = loop.time()
        sent = [
            await deadletter.send(
                key=letter.record.key, value=letter.value(), headers=letter.headers()
            )
            for letter in outcome.dead
        ]
        for future in sent:
            await future  # the dead letter is on the broker before the batch is acked
        for event in batch:
            await stream.ack(event)
        log.info(
            "kafka.batch",
            extra={
                "records": len(batch),
                "dead": len(outcome.dead),
                # Where a batch's time goes: waiting for it, the handler, publishing and acks.
                "waited": round(started - waited, 3),
                "handled": round(handled - started, 3),
                "acked": round(loop.time() - handled, 3),
            },
        )


async def _handle_until_stored(
    handler: BatchHandler, parsed: ParsedBatch, retry_seconds: float
) -> BatchOutcome:
    """Store the batch, retrying while the store fails: nothing is acked before it commits."""
    while True:
        try:
            return await asyncio.to_thread(handler.store, parsed)
        except StoreError as exc:
            log.error(
                "kafka.batch_store_failed",
                extra={"error": exc.__class__.__name__, "records": len(parsed.taken)},
            )
            await asyncio.sleep(retry_seconds)
