"""Embedded runtime throughput: HTTP ingest, dispatch to the sandbox, scheduler scaling.

Three measurements, each the median of --runs runs, with the backends
interleaved run by run so that they share the machine's noise:

1. ingest: events/s through POST /events in NDJSON batches over real HTTP
   (uvicorn on a free loopback port in a background thread, one
   httpx.Client), on a fresh store per run; --in-process adds the figure
   for FastAPI's in-process TestClient (no socket), labelled as such;
2. dispatch: messages/s through `Dispatcher.tick()` to the sandbox
   connector, ticking until nothing is due;
3. scaling: the time to dispatch --due due messages with --pending-small
   and with --pending not-yet-due messages in the store, and their ratio
   (the pending rows are bulk-inserted with one executemany per chunk).

Events are the sample streams in samples/events/ replicated with fresh
patient, event, appointment and encounter ids (as in bench/engine.py),
ingested on a virtual clock at INGEST_AT. Dispatch happens at DISPATCH_AT:
of the 86 messages one copy of the samples schedules, 41 are due then and
39 of those are sent (one is stale, one is over its frequency cap); it is
daytime in every sample time zone, outside the flows' quiet hours. A store
prepared once is cloned for every dispatch run (a file copy on SQLite,
CREATE DATABASE ... TEMPLATE on PostgreSQL), so each run starts from the
same rows. SQLite stores live in a temporary directory; PostgreSQL
databases are created on the local server and dropped at the end.

    python bench/embedded.py [--runs 3] [--events 20000] [--messages 3000]
        [--due 10000] [--pending 1000000] [--backends sqlite,postgresql]
        [--scaling-backends sqlite] [--sections ingest,dispatch,scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, func, insert, select, text

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.journey import Recipient, ScheduledMessage
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import codec, connect, upgrade
from orchestrator.store.tables import AuditRow, ScheduledMessageRow
from samples import load_samples, stream  # bench/samples.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
INGEST_AT = datetime(2026, 3, 1, tzinfo=UTC)
DISPATCH_AT = datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NDJSON = {"content-type": "application/x-ndjson"}


# -- input ----------------------------------------------------------------------


def take(events: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [next(events) for _ in range(count)]


def ndjson_bodies(samples: list[dict[str, Any]], total: int, batch: int) -> list[bytes]:
    events = stream(samples)
    bodies = []
    for start in range(0, total, batch):
        chunk = take(events, min(batch, total - start))
        bodies.append("\n".join(json.dumps(d) for d in chunk).encode() + b"\n")
    return bodies


# -- stores -----------------------------------------------------------------------


class Stores:
    """Fresh stores for this benchmark run; `close()` removes every one it made."""

    def __init__(self, pg_admin_url: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-embedded-")
        self._pg_admin_url = pg_admin_url
        self._admin: Engine | None = None
        self._prefix = f"bench_{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._databases: list[str] = []

    def _name(self) -> str:
        self._count += 1
        return f"{self._prefix}_{self._count}"

    def _pg(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(self._pg_admin_url, isolation_level="AUTOCOMMIT")
        return self._admin

    def _pg_url(self, name: str) -> str:
        return self._pg_admin_url.rsplit("/", 1)[0] + f"/{name}"

    def new(self, backend: str) -> str:
        """A migrated, empty store."""
        name = self._name()
        if backend == "sqlite":
            url = f"sqlite:///{Path(self._dir.name) / name}.db"
        else:
            with self._pg().connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            self._databases.append(name)
            url = self._pg_url(name)
        engine = connect(url)
        upgrade(engine)
        settle(engine)
        return url

    def clone(self, url: str) -> str:
        """A copy of a settled store (no open connections to it)."""
        name = self._name()
        if url.startswith("sqlite"):
            source = Path(url.removeprefix("sqlite:///"))
            target = source.with_name(f"{name}.db")
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"
        with self._pg().connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.rsplit("/", 1)[1]}"'))
        self._databases.append(name)
        return self._pg_url(name)

    def drop(self, url: str) -> None:
        if url.startswith("sqlite"):
            path = Path(url.removeprefix("sqlite:///"))
            for extra in ("", "-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
            return
        name = url.rsplit("/", 1)[1]
        with self._pg().connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._databases.remove(name)

    def close(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as c:
                for name in self._databases:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self._admin.dispose()
        self._dir.cleanup()


def settle(engine: Engine) -> None:
    """Close every connection; a SQLite store is checkpointed into its one file first."""
    engine.dispose()
    if engine.dialect.name == "sqlite" and engine.url.database:
        # On a plain driver connection: the store's connections open a transaction
        # as they begin, and a checkpoint cannot run inside one ("table is locked").
        with closing(sqlite3.connect(engine.url.database)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def build(url: str, clock: VirtualClock, dispatch_batch: int) -> EmbeddedService:
    settings = Settings(
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        db=url,
        dispatch_batch=dispatch_batch,
    )
    return EmbeddedService.build(settings, clock=clock)


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


# -- 1. ingest over HTTP ------------------------------------------------------------


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port from a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass(frozen=True)
class IngestRun:
    events: int
    seconds: float
    statuses: Counter[str]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def post_all(client: httpx.Client | Any, bodies: list[bytes]) -> tuple[float, Counter[str]]:
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    for body in bodies:
        response = client.post("/events", content=body, headers=NDJSON)
        if response.status_code != 202:
            raise RuntimeError(f"POST /events answered {response.status_code}: {response.text}")
        statuses.update(r["status"] for r in response.json()["results"])
    return time.perf_counter() - started, statuses


def ingest_run(stores: Stores, backend: str, bodies: list[bytes], *, in_process: bool) -> IngestRun:
    url = stores.new(backend)
    service = build(url, VirtualClock(INGEST_AT), Settings().dispatch_batch)
    app = create_app(service, run_dispatcher=False)
    try:
        if in_process:
            from fastapi.testclient import TestClient

            with TestClient(app) as test_client:
                seconds, statuses = post_all(test_client, bodies)
        else:
            with serving(app) as base, httpx.Client(base_url=base, timeout=300) as client:
                seconds, statuses = post_all(client, bodies)
    finally:
        service.store.engine.dispose()
        stores.drop(url)
    return IngestRun(sum(statuses.values()), seconds, statuses)


# -- 2. dispatch ----------------------------------------------------------------------


def count_due(engine: Engine, at: datetime) -> int:
    table = ScheduledMessageRow
    with engine.connect() as c:
        query = select(func.count()).where(table.status == "scheduled", table.due_at <= at)
        return int(c.execute(query).scalar_one())


def prepare_due(stores: Stores, backend: str, samples: list[dict[str, Any]], due: int) -> str:
    """A settled store with at least `due` messages due at DISPATCH_AT (ingested directly)."""
    url = stores.new(backend)
    service = build(url, VirtualClock(INGEST_AT), Settings().dispatch_batch)
    events = stream(samples)
    ingested = 0
    started = time.perf_counter()
    while (found := count_due(service.store.engine, DISPATCH_AT)) < due:
        batch = take(events, 500)
        service.processor.process([parse_event(d) for d in batch])
        ingested += len(batch)
    print(
        f"  prepared {backend}: {ingested:,} events ingested, {found:,} messages due "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    settle(service.store.engine)
    return url


@dataclass(frozen=True)
class DispatchRun:
    handled: int
    seconds: float
    ticks: int
    outcomes: Counter[str]

    @property
    def rate(self) -> float:
        return self.handled / self.seconds


def dispatch_run(stores: Stores, prepared: str, dispatch_batch: int) -> DispatchRun:
    """Tick a clone of `prepared` at DISPATCH_AT until nothing is due."""
    url = stores.clone(prepared)
    service = build(url, VirtualClock(DISPATCH_AT), dispatch_batch)
    try:
        handled = ticks = 0
        started = time.perf_counter()
        while claimed := service.dispatcher.tick():
            handled += claimed
            ticks += 1
        seconds = time.perf_counter() - started
        with service.store.engine.connect() as c:
            rows = c.execute(
                select(AuditRow.status, AuditRow.reason, func.count())
                .where(AuditRow.at == DISPATCH_AT)
                .group_by(AuditRow.status, AuditRow.reason)
            ).all()
        outcomes = Counter({(f"{s}:{r}" if r else s): int(n) for s, r, n in rows})
    finally:
        service.store.engine.dispose()
        stores.drop(url)
    return DispatchRun(handled, seconds, ticks, outcomes)


# -- 3. scheduler scaling ---------------------------------------------------------------

_SENTINEL_DUE = datetime(2099, 1, 1, tzinfo=UTC)


def _pending_template(engine: Engine) -> str:
    """A real scheduled message's payload, with placeholders for key, patient and due time."""
    with engine.connect() as c:
        payload = c.execute(
            select(ScheduledMessageRow.payload)
            .where(ScheduledMessageRow.recipient == "patient")
            .limit(1)
        ).scalar_one()
    message = codec.loads(ScheduledMessage, payload)
    template = codec.dumps(
        replace(
            message,
            key="@KEY@",
            recipient=Recipient("@PATIENT@"),
            due_at=_SENTINEL_DUE,
            expires_at=None,
        )
    )
    assert _due_text(_SENTINEL_DUE) in template, "payload datetime format changed"
    return template


def _due_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def insert_pending(url: str, count: int, chunk: int = 20_000) -> float:
    """Bulk-insert `count` scheduled messages due after DISPATCH_AT; returns seconds."""
    engine = connect(url)
    template = _pending_template(engine)
    message = codec.loads(ScheduledMessage, template.replace("@KEY@", "k"))
    table = ScheduledMessageRow.metadata.tables["scheduled_messages"]
    sentinel = _due_text(_SENTINEL_DUE)
    # Spread over 180 days from a day after the dispatch instant, a minute apart.
    first = DISPATCH_AT + timedelta(days=1)
    spread = 180 * 24 * 60
    started = time.perf_counter()
    for start in range(0, count, chunk):
        rows = []
        for i in range(start, min(count, start + chunk)):
            key = f"pending-{i:09d}"
            patient = f"p-pending-{i // 4:08d}"
            due = first + timedelta(minutes=i % spread)
            rows.append(
                {
                    "key": key,
                    "patient_id": patient,
                    "recipient": "patient",
                    "flow_id": message.flow_id,
                    "flow_version": message.flow_version,
                    "episode_id": f"ep-pending-{i // 4:08d}",
                    "stage_id": message.stage_id,
                    "message_id": message.message_id,
                    "payload": template.replace("@KEY@", key)
                    .replace("@PATIENT@", patient)
                    .replace(sentinel, _due_text(due)),
                    "status": "scheduled",
                    "reason": None,
                    "due_at": due,
                    "expires_at": None,
                    "attempts": 0,
                    "channel": None,
                    "provider_id": None,
                    "lease_owner": None,
                    "lease_until": None,
                    "sent_at": None,
                    "created_at": INGEST_AT,
                    "updated_at": INGEST_AT,
                }
            )
        with engine.begin() as c:
            c.execute(insert(table), rows)
    seconds = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        # What autovacuum would do after a load this size: fresh planner statistics.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE scheduled_messages"))
    settle(engine)
    return seconds


# -- output ------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000, help="events posted per ingest run")
    parser.add_argument("--batch", type=int, default=500, help="events per POST /events")
    parser.add_argument("--messages", type=int, default=3_000, help="due messages per dispatch run")
    parser.add_argument("--due", type=int, default=10_000, help="due messages, scaling runs")
    parser.add_argument("--pending-small", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--dispatch-batch", type=int, default=Settings().dispatch_batch)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scaling-backends", default="sqlite")
    parser.add_argument("--sections", default="ingest,dispatch,scaling")
    parser.add_argument(
        "--in-process", action="store_true", help="also time ingest through TestClient"
    )
    parser.add_argument("--pg-admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", PG_ADMIN_URL))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    sections = set(args.sections.split(","))
    samples = load_samples()
    stores = Stores(args.pg_admin_url)
    summary: list[str] = []
    began = time.perf_counter()
    try:
        scaling = [b for b in args.scaling_backends.split(",") if b]
        for name, section, on in (
            ("ingest", bench_ingest, backends),
            ("dispatch", bench_dispatch, backends),
            ("scaling", bench_scaling, scaling),
        ):
            if name in sections:
                started = time.perf_counter()
                summary += section(args, stores, samples, on)
                print(f"  ({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        stores.close()
    print(f"\n== summary: medians of {args.runs} runs ({time.perf_counter() - began:.0f} s) ==")
    for line in summary:
        print(line)


def bench_ingest(
    args: argparse.Namespace, stores: Stores, samples: list[dict[str, Any]], backends: list[str]
) -> list[str]:
    print(f"\n1. ingest: {args.events:,} events in NDJSON batches of {args.batch} via POST /events")
    bodies = ndjson_bodies(samples, args.events, args.batch)
    modes = [("http", False)] + ([("in-process", True)] if args.in_process else [])
    rates: dict[tuple[str, str], list[float]] = {}
    for run in range(1, args.runs + 1):
        for backend in backends:
            for mode, in_process in modes:
                result = ingest_run(stores, backend, bodies, in_process=in_process)
                rates.setdefault((backend, mode), []).append(result.rate)
                label = "uvicorn+httpx" if mode == "http" else "TestClient (in-process)"
                print(
                    f"  run {run} {backend:10} {label:24} {result.events:,} events in "
                    f"{result.seconds:.2f} s = {result.rate:,.0f} events/s "
                    f"{dict(sorted(result.statuses.items()))}",
                    flush=True,
                )
    lines = []
    for (backend, mode), values in rates.items():
        median = _median(values)
        label = "HTTP (uvicorn, httpx)" if mode == "http" else "in-process TestClient"
        target = f"; target >= 2,000 {_mark(median >= 2000)}" if backend == "sqlite" else ""
        line = f"ingest {label}, {backend}: {median:,.0f} events/s{target}"
        print(f"  median {line}")
        lines.append(line)
    lines += _ratios("ingest", {k: _median(v) for k, v in rates.items()})
    return lines


def bench_dispatch(
    args: argparse.Namespace, stores: Stores, samples: list[dict[str, Any]], backends: list[str]
) -> list[str]:
    print(
        f"\n2. dispatch: ~{args.messages:,} due messages, Dispatcher.tick() "
        f"(batch {args.dispatch_batch}) until nothing is due"
    )
    prepared = {b: prepare_due(stores, b, samples, args.messages) for b in backends}
    rates: dict[str, list[float]] = {}
    for run in range(1, args.runs + 1):
        for backend in backends:
            result = dispatch_run(stores, prepared[backend], args.dispatch_batch)
            rates.setdefault(backend, []).append(result.rate)
            print(
                f"  run {run} {backend:10} {result.handled:,} messages in {result.ticks} ticks, "
                f"{result.seconds:.2f} s = {result.rate:,.0f} messages/s "
                f"{dict(sorted(result.outcomes.items()))}",
                flush=True,
            )
    for url in prepared.values():
        stores.drop(url)
    lines = []
    for backend, values in rates.items():
        median = _median(values)
        line = (
            f"dispatch to sandbox, {backend}: {median:,.0f} messages/s; "
            f"target >= 1,000 {_mark(median >= 1000)}"
        )
        print(f"  median {line}")
        lines.append(line)
    lines += _ratios("dispatch", {(b, ""): _median(v) for b, v in rates.items()})
    return lines


def _ratios(what: str, medians: dict[tuple[str, str], float]) -> list[str]:
    """PostgreSQL against SQLite (and in-process against HTTP), from this run's medians."""
    lines = []
    for (backend, mode), value in medians.items():
        if backend == "postgresql" and ("sqlite", mode) in medians:
            ratio = value / medians[("sqlite", mode)]
            lines.append(f"{what} {mode + ' ' if mode else ''}postgresql/sqlite: {ratio:.2f}x")
        if mode == "in-process" and (backend, "http") in medians:
            ratio = value / medians[(backend, "http")]
            lines.append(f"{what} {backend} in-process/http: {ratio:.2f}x")
    for line in lines:
        print(f"  {line}")
    return lines


def bench_scaling(
    args: argparse.Namespace, stores: Stores, samples: list[dict[str, Any]], backends: list[str]
) -> list[str]:
    sizes = [args.pending_small, args.pending]
    print(
        f"\n3. scaling: dispatch ~{args.due:,} due messages with "
        f"{' / '.join(f'{s:,}' for s in sizes)} pending (not yet due) messages"
    )
    lines = []
    for backend in backends:
        base = prepare_due(stores, backend, samples, args.due)
        stocked = {}
        for size in sizes:
            stocked[size] = stores.clone(base)
            seconds = insert_pending(stocked[size], size)
            print(
                f"  {backend}: inserted {size:,} pending rows in {seconds:.1f} s "
                f"({size / seconds:,.0f} rows/s)",
                flush=True,
            )
        stores.drop(base)
        times: dict[int, list[float]] = {s: [] for s in sizes}
        ratios = []
        handled: set[int] = set()
        for run in range(1, args.runs + 1):
            # Alternate the order so neither size always runs on a warmer machine.
            for size in sizes if run % 2 else reversed(sizes):
                result = dispatch_run(stores, stocked[size], args.dispatch_batch)
                times[size].append(result.seconds)
                handled.add(result.handled)
                print(
                    f"  run {run} {backend:10} {size:>9,} pending: {result.handled:,} messages "
                    f"in {result.seconds:.2f} s = {result.rate:,.0f} messages/s",
                    flush=True,
                )
            ratios.append(times[sizes[1]][-1] / times[sizes[0]][-1])
            print(f"  run {run} {backend:10} ratio {ratios[-1]:.2f}", flush=True)
        for url in stocked.values():
            stores.drop(url)
        small, large = (_median(times[s]) for s in sizes)
        line = (
            f"scaling, {backend}: {'/'.join(f'{h:,}' for h in sorted(handled))} due "
            f"dispatched in {small:.2f} s with "
            f"{sizes[0]:,} pending, {large:.2f} s with {sizes[1]:,} pending; "
            f"ratio {_median(ratios):.2f} (median of per-run ratios); "
            f"target < 1.5 {_mark(_median(ratios) < 1.5)}"
        )
        print(f"  median {line}")
        lines.append(line)
    return lines


if __name__ == "__main__":
    main()
