"""A million patients: ingest, due-claim, store size and console queries at scale, in PostgreSQL.

A fresh PostgreSQL database (127.0.0.1:5432, `scale_<uuid>`, dropped at the
end unless --keep) is filled through the real application: the runtime the
service builds (`Runtime.build` over the SQL store, the shipped flows and
templates), fed the way the Kafka worker feeds it: each event's JSON parsed
by `intake.parse_json`, batches of --batch events per `Intake.take` (one
transaction each), in the order the events occurred, with the virtual clock
at the batch's last event (a live feed: processing time is occurrence time).

The patients are the sample streams (samples/events/*.jsonl: 20 patients
across the four flows, booked, rescheduled, cancelled, no-shows, completed,
admitted and discharged, opted out) replicated with fresh ids, each copy's
times (occurrence, appointment start, admission, discharge) shifted so the
copies' starts spread evenly over --days days.

The dispatcher's sends are not run (about a millisecond a message, measured
by bench/embedded.py, for millions of messages): every virtual hour, what
is due is settled as the dispatcher settles a send (`sent`, one attempt, its
`sent` audit row, counted by the audit trigger) in one SQL statement, so the
store holds what a live one holds: past messages sent, future ones pending.
At the end, the store's `claim_due` is timed as the dispatcher calls it (a
batch of `dispatch_batch`, with what fell due in the last hour), and with
nothing due (the idle poll), over the pending messages the ingest left.

The due-claim at 10,000 and at 1,000,000 pending (--pending) is measured
whatever --patients is: last, after every other figure, scheduled_messages
is topped up in bulk (`INSERT ... SELECT` over `generate_series`) with
synthetic pending messages, copies of real ones (patient, episode, payload)
keyed `synthetic-<n>`: 2,000 due at the claim's instant, the rest spread
over the next 90 days, to each count in turn; after VACUUM ANALYZE the same
`claim_due` is timed 15 times (a batch each, of the 2,000) and 15 times a
second earlier (nothing due), and the two counts' medians compared.

Printed: ingest events/s for the first and the last 100,000 events (a fifth
of the events each, in a shorter run) and their ratio; store bytes per
patient (`pg_total_relation_size` summed over the tables, and per table);
the console's and the audit's pages (bench/console.py's list, through the
real app in process) and `measured()` per flow, p50 and p95 (nearest rank,
bench/timing.py) of --runs runs each; the due-claim times and their ratio.

    python bench/scale.py [--patients 20000] [--batch 2000] [--days 90] [--runs 5]
        [--pending 10000 1000000] [--keep]

The default is 20,000 patients, not the 1,000,000 the bench is for: on this
machine (two cores shared by six jobs) ingest ran at 80 to 160 events/s, so
a million patients (5.35 million events) would take 9 to 18 hours, and
20,000 (107,000 events) about 15 to 25 minutes (18 on 2026-12-07, the
synthetic top-up to a million pending 1.5 of them). `--patients 1000000`
runs the full size where the machine allows.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from console import app_client, measured_pages, read_pages  # noqa: E402  (bench/console.py)
from sqlalchemy import Connection, create_engine, text  # noqa: E402
from timing import percentiles  # noqa: E402  (bench/timing.py)

from orchestrator.clock import VirtualClock  # noqa: E402
from orchestrator.runtime.intake import parse_json  # noqa: E402
from orchestrator.service.runtime import Runtime  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from samples import load_samples  # noqa: E402  (bench/samples.py)

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TOKEN = "admin-token-for-the-scale-bench"
START = datetime(2026, 1, 5, tzinfo=UTC)
PATIENTS_PER_COPY = 20
# Synthetic messages due at the claim's instant (a bulk import's reminders, all at 09:00).
HOT = 2_000
# Claims timed per pending count: each takes a batch of the hot ones (20 batches of 100).
CLAIM_RUNS = 15
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


# -- the events ---------------------------------------------------------------------


def _shifted(value: Any, by: timedelta) -> Any:
    """`value` with every ISO timestamp in it moved by `by` (its offset kept)."""
    if isinstance(value, dict):
        return {k: _shifted(v, by) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, by) for v in value]
    if isinstance(value, str) and _STAMP.match(value):
        return (datetime.fromisoformat(value) + by).isoformat()
    return value


def _relabelled(data: dict[str, Any], copy: int) -> dict[str, Any]:
    suffix = f"-{copy:07d}"
    data["id"] += suffix
    data["patient"]["id"] += suffix
    for caregiver in data["patient"].get("caregivers") or ():
        caregiver["id"] += suffix
    for part in ("appointment", "encounter"):
        if data.get(part):
            data[part]["id"] += suffix
    return data


def events(copies: int, days: float) -> Iterator[tuple[datetime, bytes]]:
    """Every copy's events, as (occurrence, JSON bytes), in the order they occurred."""
    samples = load_samples()
    first = min(datetime.fromisoformat(d["occurred_at"]) for d in samples)
    base = [
        (datetime.fromisoformat(d["occurred_at"]) - first + (START - first), i, d)
        for i, d in enumerate(samples)
    ]
    base.sort(key=lambda b: (b[0], b[1]))
    gap = timedelta(days=days) / copies

    def copy_of(copy: int) -> Iterator[tuple[datetime, int, int]]:
        shift = gap * copy
        for offset, index, _ in base:
            yield first + offset + shift, copy, index

    for at, copy, index in heapq.merge(*(copy_of(c) for c in range(copies))):
        shift = gap * copy + (START - first)
        data = _relabelled(_shifted(base[index][2], shift), copy)
        yield at.astimezone(UTC), json.dumps(data).encode()


# -- the database --------------------------------------------------------------------


def admin_url(given: str | None) -> str:
    return given or os.environ.get("TEST_PG_ADMIN_URL", PG_ADMIN_URL)


def create_database(admin: str) -> tuple[str, str]:
    name = f"scale_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, admin.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin: str, name: str) -> None:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# What the dispatcher leaves of a send: the message `sent` (one attempt, released),
# its attempt and its `sent` audit row (copied from the row that scheduled it).
_SEND_DUE = text(
    """
    WITH sent AS (
        UPDATE scheduled_messages
        SET status = 'sent', attempts = attempts + 1, sent_at = due_at,
            channel = coalesce(channel, 'sms'), provider_id = 'sandbox-' || key,
            lease_owner = NULL, lease_until = NULL, updated_at = :now
        WHERE status IN ('scheduled', 'claimed') AND due_at <= :now
        RETURNING key, due_at, channel
    ), attempts AS (
        INSERT INTO delivery_attempts
            (key, attempt, channel, started_at, finished_at, outcome, error, provider_id)
        SELECT key, 1, channel, due_at, due_at, 'sent', NULL, 'sandbox-' || key FROM sent
    )
    INSERT INTO audit_log
        (at, event_id, patient_id, flow_id, flow_version, episode_id, stage_id,
         message_id, key, recipient, channel, language, template, due_at, status, reason)
    SELECT s.due_at, NULL, a.patient_id, a.flow_id, a.flow_version, a.episode_id,
        a.stage_id, a.message_id, a.key, a.recipient, s.channel, a.language, a.template,
        s.due_at, 'sent', NULL
    FROM sent s CROSS JOIN LATERAL (
        SELECT * FROM audit_log WHERE audit_log.key = s.key ORDER BY id DESC LIMIT 1
    ) a
    """
)
_PENDING = text(
    "SELECT count(*) FROM scheduled_messages WHERE status = 'scheduled' AND due_at > :now"
)


def send_due(c: Connection, now: datetime) -> None:
    c.execute(_SEND_DUE, {"now": now})


def vacuum(runtime: Runtime) -> float:
    """What autovacuum does (off on the test server): dead rows reclaimed, statistics fresh."""
    began = time.perf_counter()
    with runtime.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM (ANALYZE)"))
    return time.perf_counter() - began


# -- measuring -----------------------------------------------------------------------


class ClaimTimes:
    """The due-claim, as the dispatcher calls it, timed at one instant."""

    def __init__(
        self, runtime: Runtime, now: datetime, pending: int, runs: int, *, settle: bool = True
    ) -> None:
        store, batch = runtime.store, runtime.settings.dispatch_batch
        lease = timedelta(seconds=runtime.settings.lease_seconds)
        self.pending = pending
        self.batch: list[float] = []
        self.claimed: list[int] = []
        for _ in range(runs):
            began = time.perf_counter()
            claims = store.claim_due(now, "scale-bench", now + lease, batch)
            self.batch.append(time.perf_counter() - began)
            self.claimed.append(len(claims))
            if not claims:
                break
        # Nothing due: the real messages due were sent (`settle`); a second before the
        # synthetic ones fall due (what is claimed holds its lease past it).
        idle_at = now
        if settle:
            with store.transactions.write() as c:
                send_due(c, now)
        else:
            idle_at = now - timedelta(seconds=1)
        self.idle: list[float] = []
        for _ in range(runs):
            began = time.perf_counter()
            assert not store.claim_due(idle_at, "scale-bench", idle_at + lease, batch)
            self.idle.append(time.perf_counter() - began)

    def line(self, label: str) -> str:
        b50, b95 = percentiles(self.batch)
        i50, i95 = percentiles(self.idle)
        return (
            f"  due-claim with {self.pending:>9,} pending ({label}): a batch "
            f"({'/'.join(str(n) for n in sorted(set(self.claimed)))} due claimed) "
            f"p50 {b50:6.2f} ms p95 {b95:6.2f} ms; nothing due p50 {i50:6.2f} ms "
            f"p95 {i95:6.2f} ms"
        )


# Synthetic pending messages: copies of real ones (their patient, episode, payload, as
# foreign keys would ask), keyed `synthetic-<n>`; the first `hot` of them due at the
# claim's instant, the rest spread over the next 90 days, in an order unrelated to their keys.
_TOP_UP = text(
    """
    WITH t AS (
        SELECT row_number() OVER (ORDER BY key) - 1 AS n, * FROM (
            SELECT * FROM scheduled_messages WHERE key NOT LIKE 'synthetic-%' LIMIT 1000
        ) real
    ), size AS (SELECT count(*) AS n FROM t)
    INSERT INTO scheduled_messages
        (key, patient_id, recipient, flow_id, flow_version, episode_id, stage_id,
         message_id, payload, status, reason, due_at, expires_at, attempts, channel,
         provider_id, lease_owner, lease_until, sent_at, created_at, updated_at, import_id)
    SELECT 'synthetic-' || g, t.patient_id, t.recipient, t.flow_id, t.flow_version,
        t.episode_id, t.stage_id, t.message_id, t.payload, 'scheduled', NULL,
        CASE WHEN g < :hot THEN CAST(:now AS timestamptz)
            ELSE CAST(:now AS timestamptz) + (1 + (g * 7919) % 7776000) * interval '1 second'
        END,
        NULL, 0, t.channel, NULL, NULL, NULL, NULL, :now, :now, NULL
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g
    CROSS JOIN size JOIN t ON t.n = g % size.n
    """
)
# What one measurement's claims took, handed back for the next (as a restart's
# claimer would find them, had the first one's lease run out).
_RELEASE = text(
    "UPDATE scheduled_messages SET status = 'scheduled', lease_owner = NULL,"
    " lease_until = NULL WHERE key LIKE 'synthetic-%' AND status <> 'scheduled'"
)
_ALL_PENDING = text("SELECT count(*) FROM scheduled_messages WHERE status = 'scheduled'")


class SyntheticClaims:
    """The due-claim at given pending counts, reached with synthetic pending messages.

    The ingest leaves as many pending messages as its patients make; the
    claim's cost at a million pending is measured whatever --patients is, by
    topping scheduled_messages up in bulk (`_TOP_UP`) to each count in turn,
    `hot` of them due at the claim's instant. Then, after VACUUM ANALYZE, the
    store's `claim_due` is timed as the dispatcher calls it: --runs batches at
    that instant, and --runs polls a second before it (nothing due).
    """

    def __init__(self, runtime: Runtime, now: datetime, targets: list[int], runs: int) -> None:
        self.times: list[tuple[int, ClaimTimes, float]] = []
        added = 0
        hot = min(HOT, targets[0])
        for target in targets:
            began = time.perf_counter()
            with runtime.store.transactions.write() as c:
                c.execute(_RELEASE)
                pending = int(c.execute(_ALL_PENDING).scalar_one())
                more = max(target - pending, hot - added, 0)
                if more:
                    c.execute(
                        _TOP_UP,
                        {"now": now, "hot": hot, "first": added, "last": added + more - 1},
                    )
                added += more
                pending += more
            vacuum(runtime)
            filled = time.perf_counter() - began
            claims = ClaimTimes(runtime, now, pending, runs, settle=False)
            self.times.append((added, claims, filled))
            print(claims.line(f"{added:,} synthetic, topped up in {filled:,.0f} s"), flush=True)


def ingest(
    runtime: Runtime, clock: VirtualClock, args: argparse.Namespace
) -> tuple[list[tuple[int, float]], int]:
    """Feed every event, then time the claim; (events, seconds) per batch, the events fed."""
    copies = -(-args.patients // PATIENTS_PER_COPY)
    region = runtime.settings.default_region
    batches: list[tuple[int, float]] = []
    fed = 0
    hour = timedelta(hours=1)
    span = timedelta(days=1)
    next_send = START + hour
    next_count = START + timedelta(days=1)
    pending = 0
    began = time.perf_counter()
    reported = began
    pending_batch: list[tuple[datetime, bytes]] = []
    vacuumed = 0
    vacuum_seconds = 0.0

    def feed(batch: list[tuple[datetime, bytes]]) -> None:
        nonlocal fed, vacuumed, vacuum_seconds
        clock.move_to(max(clock.now(), batch[-1][0]))
        started = time.perf_counter()
        inputs = [parse_json(body, default_region=region) for _, body in batch]
        results = runtime.intake.take("kafka", inputs)
        batches.append((len(batch), time.perf_counter() - started))
        # The samples send a few events twice (as a real feed does): those are duplicates.
        refused = [r for r in results if r.status not in ("accepted", "duplicate")]
        if refused:
            raise SystemExit(f"{len(refused)} events refused, the first: {refused[0]}")
        fed += len(batch)
        # Autovacuum's default: a table is vacuumed and analyzed once a fifth of it changed.
        if fed - vacuumed >= max(5_000, vacuumed // 5):
            vacuumed = fed
            vacuum_seconds += vacuum(runtime)

    def after(now: datetime) -> None:
        """At least an hour of virtual time since the last: what fell due is sent,
        and once a day the pending messages are counted."""
        nonlocal next_send, next_count, pending, reported
        if now < next_send:
            return
        next_send = now + hour
        with runtime.store.transactions.write() as c:
            send_due(c, now)
        if now < next_count:
            return
        while next_count <= now:
            next_count += timedelta(days=1)
        with runtime.store.transactions.read() as c:
            pending = int(c.execute(_PENDING, {"now": now}).scalar_one())
        if time.perf_counter() - reported > 30:
            reported = time.perf_counter()
            print(
                f"  {fed:,} events in {reported - began:,.0f} s ({vacuum_seconds:,.0f} s of "
                f"vacuum), virtual {now:%Y-%m-%d %H:%M}, {pending:,} pending",
                flush=True,
            )

    for at, body in events(copies, args.days):
        # A batch closes at --batch events, or before it would span more than a
        # day of virtual time (the clock is at its last event: a live feed's lag).
        if pending_batch and at - pending_batch[0][0] > span:
            feed(pending_batch)
            pending_batch = []
            after(clock.now())
        pending_batch.append((at, body))
        if len(pending_batch) >= args.batch:
            feed(pending_batch)
            pending_batch = []
            after(clock.now())
    if pending_batch:
        feed(pending_batch)
    now = clock.now() + hour
    clock.move_to(now)
    with runtime.store.transactions.read() as c:
        pending = int(c.execute(_PENDING, {"now": now}).scalar_one())
    vacuum_seconds += vacuum(runtime)
    print(f"  vacuum and analyze (autovacuum's work): {vacuum_seconds:,.0f} s in all", flush=True)
    final = ClaimTimes(runtime, now, pending, args.runs)
    print(final.line("the end, the ingest's own"), flush=True)
    return batches, fed


def rate(batches: list[tuple[int, float]], count: int) -> tuple[float, float]:
    """Events/s over the batches that hold the first `count` events of `batches`, and
    their mean size (a batch's fixed cost weighs more in a small one: the feed's
    quiet days, at its start and end, close a batch below --batch)."""
    events = seconds = 0.0
    taken = 0
    for n, s in batches:
        if events >= count:
            break
        events += n
        seconds += s
        taken += 1
    return events / seconds, events / taken


def sizes(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.store.transactions.read() as c:
        rows = c.execute(
            text(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class"
                " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                " ORDER BY 2 DESC"
            )
        ).all()
    return [(str(name), int(size)) for name, size in rows]


def pages(runtime: Runtime, runs: int) -> list[tuple[str, float, float]]:
    client = app_client(runtime, TOKEN)
    timed = read_pages(client, runtime) + measured_pages(runtime)
    found = []
    for label, page in timed:
        page()  # warm-up
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            page()
            times.append(time.perf_counter() - began)
        p50, p95 = percentiles(times)
        found.append((label, p50, p95))
        print(f"  {label:<50} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms", flush=True)
    client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000, help="1000000 for the full size")
    parser.add_argument("--batch", type=int, default=2_000, help="events per intake transaction")
    parser.add_argument("--days", type=float, default=90, help="the window the copies start in")
    parser.add_argument("--runs", type=int, default=5, help="timings per query")
    parser.add_argument(
        "--pending",
        type=int,
        nargs=2,
        default=[10_000, 1_000_000],
        help="the pending counts the due-claim is timed at (synthetic messages top up)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN)")
    parser.add_argument("--pg-admin-url", default=None)
    args = parser.parse_args()
    admin = admin_url(args.pg_admin_url)
    name, url = create_database(admin)
    began = time.perf_counter()
    try:
        clock = VirtualClock(START)
        settings = Settings(
            db=url, flows=ROOT / "flows", templates=ROOT / "templates", api_token=TOKEN
        )
        runtime = Runtime.build(settings, clock=clock)
        print(
            f"scale: {args.patients:,} patients, batches of {args.batch:,} events, "
            f"copies starting over {args.days:g} days from {START:%Y-%m-%d}",
            flush=True,
        )
        batches, fed = ingest(runtime, clock, args)
        ingested = sum(s for _, s in batches)
        window = min(100_000, fed // 5)
        (first, first_size), (last, last_size) = (
            rate(batches, window),
            rate(list(reversed(batches)), window),
        )
        print(
            f"ingest: {fed:,} events in {ingested:,.0f} s of intake "
            f"({fed / ingested:,.0f} events/s; {time.perf_counter() - began:,.0f} s in all)"
        )
        print(
            f"ingest first {window:,} events: {first:,.0f} events/s (batches of "
            f"{first_size:,.0f} on average); last {window:,}: {last:,.0f} events/s (batches "
            f"of {last_size:,.0f}); ratio {last / first:.2f} (target >= 0.8)"
        )
        found = sizes(runtime)
        total = sum(size for _, size in found)
        print(f"store: {total / 2**20:,.1f} MiB, {total / args.patients:,.0f} bytes per patient")
        for table, size in found:
            if size >= 65536:
                print(f"  {table:<22} {size / args.patients:>9,.0f} bytes per patient")
        print(f"queries ({args.runs} runs each, after a warm-up):")
        pages(runtime, args.runs)
        # Last: the synthetic messages are in no figure above.
        print(
            f"due-claim at {', '.join(f'{n:,}' for n in args.pending)} pending, topped up with "
            f"synthetic pending messages ({min(HOT, args.pending[0]):,} of them due at once):",
            flush=True,
        )
        synthetic = SyntheticClaims(runtime, clock.now(), args.pending, CLAIM_RUNS).times
        (_, small, _), (_, large, _) = synthetic[0], synthetic[-1]
        ratio = statistics.median(large.batch) / statistics.median(small.batch)
        idle = statistics.median(large.idle) / statistics.median(small.idle)
        print(
            f"due-claim: {small.pending:,} -> {large.pending:,} pending (synthetic top-up): "
            f"a batch ratio {ratio:.2f}, nothing due ratio {idle:.2f}"
        )
        runtime.close()
        print(f"scale: done in {time.perf_counter() - began:,.0f} s")
    finally:
        if args.keep:
            print(f"kept: {url}")
        else:
            drop_database(admin, name)


if __name__ == "__main__":
    main()
