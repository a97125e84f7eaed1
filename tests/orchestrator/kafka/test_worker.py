"""The Kafka runtime on a real broker: workers as processes, PostgreSQL, the CLI.

Each test gets a fresh Tansu broker and an empty PostgreSQL database. The
sample streams are moved so that each ends a minute ago and copied under
fresh ids (as in the crash test), so messages fall due at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.clock import SystemClock
from orchestrator.event_schema import parse_event_json
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import connect
from orchestrator.store.tables import (
    AuditRow,
    OutboxRow,
    ProcessedEventRow,
    RejectedInputRow,
    ScheduledMessageRow,
)
from tests.kafka_broker import Broker
from tests.live import wait_until
from tests.orchestrator.kafka.conftest import SCRIPT, StartWorker
from tests.samples import ROOT, contact_details
from tests.test_crash_recovery import FINAL, ending_now

runner = CliRunner()


def create_topics(broker: Broker, partitions: int) -> None:
    result = runner.invoke(
        app, ["topics", "create", "--broker", broker.url, "--partitions", str(partitions)]
    )
    assert result.exit_code == 0, result.output
    assert "created patient.deadletter" in result.output


def ingest(broker: Broker, path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(path), "--broker", broker.url])
    assert result.exit_code == 0, result.output


def stream_file(tmp_path: Path, name: str, bodies: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(bodies))
    return path


def distinct(bodies: list[bytes]) -> int:
    """How many events the bodies hold (the samples repeat some on purpose)."""
    return len({json.loads(b)["id"] for b in bodies})


def processed(pg: Engine) -> int:
    with pg.connect() as c:
        return int(c.execute(select(func.count()).select_from(ProcessedEventRow)).scalar_one())


def decisions(engine: Engine) -> list[tuple[Any, ...]]:
    """What processing decided about messages: the audit rows an event caused."""
    with engine.connect() as c:
        rows = c.execute(
            select(AuditRow.key, AuditRow.status, AuditRow.reason, AuditRow.event_id).where(
                AuditRow.event_id.is_not(None)
            )
        ).all()
    return sorted(tuple(r) for r in rows)


def embedded_decisions(tmp_path: Path, bodies: list[bytes]) -> list[tuple[Any, ...]]:
    """The same events through the embedded runtime's processor, one request each, in order."""
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    settings = Settings(db=url, flows=ROOT / "flows", templates=ROOT / "templates")
    service = EmbeddedService.build(settings, clock=SystemClock())
    for body in bodies:
        service.processor.process([parse_event_json(body)])
    service.store.engine.dispose()
    engine = connect(url)
    try:
        return decisions(engine)
    finally:
        engine.dispose()


def test_stream_through_a_worker_gives_the_embedded_runtimes_decisions_across_partitions(
    tmp_path: Path, broker: Broker, start_worker: StartWorker, pg: Engine
) -> None:
    bodies = ending_now(datetime.now(UTC))[:400]
    create_topics(broker, partitions=8)
    ingest(broker, stream_file(tmp_path, "stream.jsonl", bodies))
    # Dispatch idles, so that what is compared is what processing decided.
    # One batch window long enough to take what is on the topics at once.
    worker = start_worker(
        partitions=8,
        ORCHESTRATOR_DISPATCH_POLL_SECONDS="3600",
        ORCHESTRATOR_KAFKA_BATCH="5000",
        ORCHESTRATOR_KAFKA_BATCH_SECONDS="2",
    )

    wait_until(
        lambda: worker.process.poll() is not None or processed(pg) == distinct(bodies),
        timeout=60,
        what="every event processed",
    )
    assert worker.process.poll() is None, worker.output()

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition("patient.scheduling", p) for p in range(8)])
    finally:
        consumer.close()
    assert sum(1 for end in ends.values() if end > 0) > 1, "the stream used one partition"
    found = decisions(pg)
    assert {status for _, status, _, _ in found} >= {"scheduled", "cancelled"}
    assert found == embedded_decisions(tmp_path, bodies)
    log = worker.output()
    # (A line may start after a terminal escape that Faust writes.)
    batches = [
        json.loads(line[line.index("{") :])
        for line in log.splitlines()
        if '"event": "kafka.batch"' in line
    ]
    # Each batch says where its time went: waiting for events, the handler, the acks.
    assert batches and all(
        b["handled"] > 0 and b["waited"] >= 0 and b["acked"] >= 0 for b in batches
    ), batches
    assigned = [
        json.loads(line)["partitions"]
        for line in log.splitlines()
        if line.startswith("{") and '"kafka.partitions_assigned"' in line
    ]
    assert max(assigned, default=0) == 8 * 4, (
        "the worker did not say it took the 4 topics' partitions"
    )
    assert [c for c in contact_details() if c in log] == [], "contact details in the worker's log"


def test_poison_goes_to_the_dead_letter_topic_with_its_reason_and_blocks_nothing(
    broker: Broker, start_worker: StartWorker, pg: Engine
) -> None:
    create_topics(broker, partitions=2)
    good = ending_now(datetime.now(UTC))[0]
    patient = json.loads(good)["patient"]["id"].encode()
    poison = [
        b"{not json",
        b'{"an": "object that is no event"}',
        json.dumps({**json.loads(good), "id": "evt-x", "type": "appointment.teleported"}).encode(),
    ]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        sent = [
            producer.send("patient.scheduling", key=patient, value=value).get(10)
            for value in [*poison, good.rstrip(b"\n")]
        ]
    finally:
        producer.close()
    worker = start_worker(partitions=2)

    wait_until(
        lambda: worker.process.poll() is not None or processed(pg) == 1,
        timeout=60,
        what="the good event behind the poison processed",
    )
    assert worker.process.poll() is None, worker.output()
    letters = read_dead_letters(broker, expected=3)

    assert [(d["topic"], d["partition"], d["offset"]) for d in letters] == [
        ("patient.scheduling", m.partition, m.offset) for m in sent[:3]
    ]
    assert [d["value"].encode() for d in letters] == poison
    assert "not JSON" in letters[0]["reason"]
    assert "patient: Field required" in letters[1]["reason"]
    assert "unknown event type" in letters[2]["reason"]
    with pg.connect() as c:
        kept = c.execute(select(RejectedInputRow.reason, RejectedInputRow.body)).all()
    assert sorted(bytes(body) for _, body in kept) == sorted(poison)
    assert sorted(reason for reason, _ in kept) == sorted(d["reason"] for d in letters)

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.output()


def read_dead_letters(broker: Broker, expected: int) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, consumer_timeout_ms=1000, auto_offset_reset="earliest"
    )
    try:
        partitions = [TopicPartition("patient.deadletter", p) for p in range(2)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        letters: list[dict[str, Any]] = []

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                letters.extend(json.loads(r.value) for r in records)
            return len(letters) >= expected

        wait_until(enough, timeout=30, what=f"{expected} dead letters")
    finally:
        consumer.close()
    return sorted(letters, key=lambda d: d["offset"])


def test_a_worker_killed_mid_stream_loses_no_event_and_sends_nothing_twice(
    tmp_path: Path, broker: Broker, start_worker: StartWorker, pg: Engine
) -> None:
    bodies = ending_now(datetime.now(UTC))
    half = len(bodies) // 2
    create_topics(broker, partitions=4)
    doomed = start_worker(ORCHESTRATOR_KAFKA_BATCH="20")
    survivor = start_worker(ORCHESTRATOR_KAFKA_BATCH="20")
    ingest(broker, stream_file(tmp_path, "first.jsonl", bodies[:half]))

    wait_until(
        lambda: sent(pg) >= 3 and processed(pg) > 0,
        timeout=60,
        interval=0.005,
        what="events processed and messages sent by the workers",
    )
    doomed.kill()
    assert processed(pg) < distinct(bodies), "everything was done before the kill"
    ingest(broker, stream_file(tmp_path, "second.jsonl", bodies[half:]))

    wait_until(
        lambda: survivor.process.poll() is not None or processed(pg) == distinct(bodies),
        timeout=90,
        what="every event processed by the survivor",
    )
    assert survivor.process.poll() is None, survivor.output()

    def settled() -> datetime | None:
        now = datetime.now(UTC)
        with pg.connect() as c:
            open_ = c.execute(
                select(func.count())
                .select_from(ScheduledMessageRow)
                .where(ScheduledMessageRow.status.not_in(FINAL), ScheduledMessageRow.due_at <= now)
            ).scalar_one()
        return now if open_ == 0 else None

    wait_until(settled, timeout=60, what="every due message in a final status")
    with pg.connect() as c:
        repeated = c.execute(
            select(OutboxRow.key, func.count()).group_by(OutboxRow.key).having(func.count() > 1)
        ).all()
        outbox = set(c.execute(select(OutboxRow.key)).scalars())
        sent_keys = set(
            c.execute(
                select(ScheduledMessageRow.key).where(ScheduledMessageRow.status == "sent")
            ).scalars()
        )
        ids = set(c.execute(select(ProcessedEventRow.event_id)).scalars())
    assert ids == {json.loads(b)["id"] for b in bodies}, "an event was lost"
    assert repeated == [], "sent twice"
    assert outbox == sent_keys


def sent(pg: Engine) -> int:
    with pg.connect() as c:
        return int(c.execute(select(func.count()).select_from(OutboxRow)).scalar_one())


# A worker whose batch handler fails on every batch (a bug, not bad input).
CRASHING_WORKER = """
import os, sys, tempfile
import faust
from orchestrator.kafka.app import AgentOptions, build_app

class Failing:
    def parse(self, records):
        return records

    def store(self, parsed):
        raise RuntimeError("a bug in the handler")

app = build_app(Failing(), AgentOptions(
    broker=sys.argv[1], group="crashing", session_timeout=3, datadir=tempfile.mkdtemp()))
try:
    faust.Worker(app, loglevel="WARNING", override_logging=False, quiet=True).execute_from_commandline()
except SystemExit as exc:
    print("EXIT", exc.code, flush=True)
    os._exit(0)
"""


def test_a_failing_agent_stops_the_worker_and_commits_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    create_topics(broker, partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        producer.send("patient.scheduling", key=b"p-1", value=b"{}").get(10)
    finally:
        producer.close()
    log = tmp_path / "crashing.log"

    with log.open("wb") as output:
        done = subprocess.run(
            [sys.executable, "-c", CRASHING_WORKER, broker.url],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=90,
            cwd=tmp_path,
        )

    assert done.returncode == 0
    assert "EXIT 1" in log.read_text(), log.read_text()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="crashing")
    try:
        assert consumer.committed(TopicPartition("patient.scheduling", 0)) is None
    finally:
        consumer.close()


def test_a_worker_with_dispatch_off_claims_nothing_and_a_dispatcher_alone_sends(
    tmp_path: Path, broker: Broker, start_worker: StartWorker, pg: Engine, pg_url: str
) -> None:
    """ORCHESTRATOR_DISPATCH=off: the worker only takes events in; `orchestrator dispatch` sends."""
    bodies = ending_now(datetime.now(UTC))[:400]
    create_topics(broker, partitions=4)
    worker = start_worker(ORCHESTRATOR_DISPATCH="off")
    # In two files: while the second is processed, the first's messages are due
    # (a worker dispatching would claim them then, its loop polling every 0.05 s).
    for part, name in ((bodies[:200], "first.jsonl"), (bodies, "second.jsonl")):
        ingest(broker, stream_file(tmp_path, name, part[-200:]))
        wait_until(
            lambda part=part: worker.process.poll() is not None or processed(pg) == distinct(part),
            timeout=60,
            what="every event processed",
        )
        assert worker.process.poll() is None, worker.output()
    with pg.connect() as c:
        touched = c.execute(
            select(func.count())
            .select_from(ScheduledMessageRow)
            .where(
                ScheduledMessageRow.lease_owner.is_not(None) | (ScheduledMessageRow.attempts > 0)
            )
        ).scalar_one()
        due = c.execute(
            select(func.count())
            .select_from(ScheduledMessageRow)
            .where(
                ScheduledMessageRow.status == "scheduled",
                ScheduledMessageRow.due_at <= datetime.now(UTC),
            )
        ).scalar_one()
    assert (touched, sent(pg)) == (0, 0)
    assert due > 0, "nothing fell due: the test shows nothing"
    assert '"dispatch.off"' in worker.output()

    log = tmp_path / "dispatch.log"
    with log.open("wb") as output:
        dispatcher = subprocess.Popen(
            [
                str(SCRIPT),
                "dispatch",
                "--db",
                pg_url,
                "--flows",
                str(ROOT / "flows"),
                "--templates",
                str(ROOT / "templates"),
            ],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: dispatcher.poll() is not None or sent(pg) > 0,
            timeout=60,
            what="a message sent by the dispatcher alone",
        )
        assert dispatcher.poll() is None, log.read_text(errors="replace")
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        status = dispatcher.wait(30)
    assert status == 0, log.read_text(errors="replace")
