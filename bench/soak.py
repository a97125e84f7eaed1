"""Soak: the real service under generated traffic, `kill -9`s and a slow provider, then the invariants.

For a bounded time (`--minutes`, split evenly between the stores) it runs
`orchestrator run` as real processes:

- SQLite: one process, as the embedded default runs;
- PostgreSQL: two processes on one fresh database, dispatching side by side.

A generator plays patient streams of the knee-replacement care path on the
wall clock: bookings whose 24-hour reminder falls due during the run,
reschedules, cancellations, no-shows, SMS opt-outs, rebookings, updates whose
patient block carries only the id, and re-posted duplicates. Most of the
changes land within seconds of the reminder they change falling due, so they
race the dispatcher. Every patient lives in a time zone where it is about noon,
so quiet hours hold nothing back.

The sandbox takes `--latency` seconds a send, and every `--kill-every`
seconds (on average) one service process is killed with SIGKILL and started
again. Posts that fail because the process died are posted again to a live
one (event ids make that harmless). When the time is up the kills stop, the
services drain what is due, and the invariant checker reads the store.

It prints the events, messages, sends and kills, and the count of each
violation; every count must be 0.

    python bench/soak.py [--minutes 10] [--stores sqlite,postgresql]
        [--patients-per-minute 120] [--latency 0.02] [--kill-every 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, func, select, text

from orchestrator.store import connect, upgrade
from orchestrator.store.invariants import check_invariants
from orchestrator.store.tables import AuditRow, OutboxRow, ScheduledMessageRow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "orchestrator"
PG_ADMIN_URL = os.environ.get(
    "SOAK_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NDJSON = {"content-type": "application/x-ndjson"}
UNFINISHED = ("scheduled", "claimed", "sending")


# -- the generated traffic ------------------------------------------------------


def noon_zone(now: datetime) -> str:
    """An IANA zone whose local time is now between 12:00 and 13:00."""
    offset = 12 - now.hour
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


@dataclass(order=True)
class Planned:
    """One event, to be posted `at` seconds into the run."""

    at: float
    body: dict[str, Any] = field(compare=False)


def plan(seconds: float, patients: int, start: datetime, rng: random.Random) -> list[Planned]:
    """Every event of the run, in posting order.

    A patient books in the first 60% of the run; the 24-hour reminder of the
    booked consult then falls due before the run ends, and whatever the
    patient does next lands near that moment.
    """
    zone = noon_zone(start)
    run = uuid.uuid4().hex[:6]
    planned: list[Planned] = []
    counter = 0

    def at_time(offset: float) -> str:
        return (start + timedelta(seconds=offset)).isoformat()

    def event(offset: float, kind: str, patient: dict[str, Any], **parts: Any) -> None:
        nonlocal counter
        counter += 1
        body = {
            "id": f"evt-soak-{run}-{counter}",
            "type": kind,
            "occurred_at": at_time(offset),
            "source": "soak",
            "patient": patient,
            **parts,
        }
        planned.append(Planned(offset, body))

    for n in range(patients):
        pid = f"p-soak-{run}-{n}"
        full = {
            "id": pid,
            "phone": f"+155555501{n % 100:02d}",
            "email": f"patient{n}@example.org",
            "language": rng.choice(["en", "es"]),
            "timezone": zone,
            "preferred_channel": rng.choice(["sms", "email"]),
        }
        booked_at = rng.uniform(0, seconds * 0.6)
        due = rng.uniform(booked_at + 2, seconds * 0.9)  # the reminder falls due here
        appointment = {
            "id": f"a-soak-{run}-{n}",
            "start": at_time(due + 24 * 3600),
            "service": "orthopedics.knee.consult",
            "location": "North Pavilion, Suite 400",
            "provider": "Dr. Okafor",
        }
        event(booked_at, "appointment.booked", full, appointment=appointment)
        near = max(booked_at + 0.5, due + rng.uniform(-3, 3))
        fate = rng.random()
        if fate < 0.25:
            moved = dict(appointment, start=at_time(due + rng.uniform(-60, 120) + 24 * 3600))
            who = {"id": pid} if rng.random() < 0.5 else full
            event(near, "appointment.rescheduled", who, appointment=moved)
        elif fate < 0.40:
            event(near, "appointment.cancelled", {"id": pid}, appointment=appointment)
            if rng.random() < 0.5:
                again = dict(appointment, id=f"a-soak-{run}-{n}-r")
                again["start"] = at_time(rng.uniform(near, seconds * 0.95) + 24 * 3600)
                event(min(near + 5, seconds * 0.95), "appointment.booked", full, appointment=again)
        elif fate < 0.50:
            event(near, "appointment.no_show", {"id": pid}, appointment=appointment)
        elif fate < 0.60:
            event(near, "consent.opted_out", {"id": pid}, attributes={"channel": "sms"})
        elif fate < 0.80:
            event(rng.uniform(booked_at, due), "patient.updated", {"id": pid})
    for item in rng.sample(planned, len(planned) // 20):
        planned.append(Planned(min(item.at + rng.uniform(0, 5), seconds), item.body))
    planned.sort()
    return planned


# -- the service processes --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One `orchestrator run` process, restarted on the same port after each kill."""

    db: str
    workdir: Path
    settings: dict[str, str]
    code: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log_path = self.workdir / f"node-{self.port}-{self.starts}.log"
        log = log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code)  # the service from another checkout
        env |= {f"ORCHESTRATOR_{k.upper()}": v for k, v in self.settings.items()}
        self.process = subprocess.Popen(
            [
                str(SCRIPT),
                "run",
                "--port",
                str(self.port),
                "--db",
                self.db,
                "--flows",
                str(ROOT / "flows"),
                "--templates",
                str(ROOT / "templates"),
            ],
            env=env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the service exited with {self.process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("the service did not answer /healthz within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Tally:
    posted: int = 0
    reposted: int = 0
    kills: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


def post_all(
    planned: list[Planned], nodes: list[Node], began: float, tally: Tally, rng: random.Random
) -> None:
    """Posts each event at its time, in small NDJSON batches, to a live node; retries until taken."""
    clients = {
        node.port: httpx.Client(base_url=node.url, headers=NDJSON, timeout=30) for node in nodes
    }
    position = 0
    try:
        while position < len(planned):
            now = time.monotonic() - began
            batch = []
            while position < len(planned) and planned[position].at <= now and len(batch) < 50:
                batch.append(planned[position].body)
                position += 1
            if not batch:
                time.sleep(min(0.05, max(0.0, planned[position].at - now)))
                continue
            content = b"".join(json.dumps(b).encode() + b"\n" for b in batch)
            deadline = time.monotonic() + 120
            while True:
                node = rng.choice(nodes)
                try:
                    response = clients[node.port].post("/events", content=content)
                    tally.statuses[response.status_code] += 1
                    if response.status_code == 202:
                        break
                except httpx.TransportError:
                    pass
                tally.reposted += 1
                if time.monotonic() > deadline:
                    raise SystemExit("no service took a batch for 120 s")
                time.sleep(0.1)
            tally.posted += len(batch)
    finally:
        for client in clients.values():
            client.close()


def kill_now_and_then(
    nodes: list[Node], every: float, stop: threading.Event, tally: Tally, rng: random.Random
) -> None:
    """SIGKILLs a random node about every `every` seconds and starts it again."""
    while not stop.wait(rng.expovariate(1 / every)):
        node = rng.choice(nodes)
        node.kill()
        tally.kills += 1
        node.start()


# -- one store ----------------------------------------------------------------------


def unfinished_due(engine: Engine, before: datetime) -> int:
    table = ScheduledMessageRow
    with engine.connect() as c:
        return int(
            c.execute(
                select(func.count()).where(table.status.in_(UNFINISHED), table.due_at <= before)
            ).scalar_one()
        )


def soak(
    label: str, db: str, processes: int, seconds: float, args: argparse.Namespace, workdir: Path
) -> int:
    rng = random.Random(args.seed)
    engine = connect(db)
    if args.service_code is None:
        upgrade(engine)
    else:  # that checkout's own migrations: this one's may be ahead of its code
        migrate = "import sys; from orchestrator.store import connect, upgrade; upgrade(connect(sys.argv[1]))"
        env = os.environ | {"PYTHONPATH": str(args.service_code)}
        subprocess.run(
            [sys.executable, "-c", migrate, db], env=env, cwd=args.service_code, check=True
        )
    settings = {
        "sandbox_latency_seconds": str(args.latency),
        "lease_seconds": str(args.lease),
        "dispatch_poll_seconds": "0.2",
        "dispatch_batch": "50",
    }
    nodes = [Node(db, workdir, settings, args.service_code) for _ in range(processes)]
    for node in nodes:
        node.start()
    start = datetime.now(UTC)
    patients = int(args.patients_per_minute * seconds / 60)
    planned = plan(seconds, patients, start, rng)
    tally = Tally()
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_now_and_then, args=(nodes, args.kill_every, stop, tally, rng), daemon=True
    )
    began = time.monotonic()
    killer.start()
    try:
        post_all(planned, nodes, began, tally, rng)
        stop.wait(max(0.0, seconds - (time.monotonic() - began)))
    finally:
        stop.set()
        killer.join()
    # Drain: everything due by the end of the run reaches a final state.
    ended = datetime.now(UTC)
    deadline = time.monotonic() + args.lease * 4 + 120
    for node in nodes:
        if not node.alive():
            node.start()
    while unfinished_due(engine, ended) and time.monotonic() < deadline:
        time.sleep(0.5)
    for node in nodes:
        node.stop()
    report = check_invariants(engine, due_before=ended)
    with engine.connect() as c:
        messages = c.execute(select(func.count()).select_from(ScheduledMessageRow)).scalar_one()
        statuses = dict(
            c.execute(
                select(ScheduledMessageRow.status, func.count()).group_by(
                    ScheduledMessageRow.status
                )
            ).all()
        )
        sends = c.execute(select(func.count()).select_from(OutboxRow)).scalar_one()
        # The latest audit row of each suppressed message says why.
        reasons = dict(
            c.execute(
                select(AuditRow.reason, func.count())
                .where(AuditRow.status == "suppressed")
                .group_by(AuditRow.reason)
            ).all()
        )
    engine.dispose()
    print(f"## {label}: {processes} process(es), {seconds / 60:.1f} min")
    print(
        f"events planned {len(planned):,} (patients {patients:,}), posted {tally.posted:,}, re-posted batches {tally.reposted:,}"
    )
    print(f"answers {dict(sorted(tally.statuses.items()))}")
    print(f"kills {tally.kills}")
    print(f"messages {messages:,}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())))
    print(f"sends (sandbox outbox) {sends:,}")
    print(
        "suppressions by reason: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=str))
    )
    broken = {v.name: v for v in report.violations}
    total = 0
    for name in report.checked:
        violation = broken.get(name)
        count = violation.count if violation else 0
        examples = f" (e.g. {', '.join(violation.examples[:3])})" if violation else ""
        print(f"violation {name}: {count}{examples}")
        total += count
    print(f"violations in all: {total}")
    print()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="the whole soak, split between the stores"
    )
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--patients-per-minute", type=float, default=120.0)
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds each sandbox send takes"
    )
    parser.add_argument("--lease", type=float, default=5.0, help="ORCHESTRATOR_LEASE_SECONDS")
    parser.add_argument(
        "--kill-every", type=float, default=20.0, help="mean seconds between kill -9s"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--service-code",
        type=Path,
        default=None,
        help="run the service from this checkout (e.g. a worktree of an older commit), "
        "to show what the checker finds there (its own code migrates the store)",
    )
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    seconds = args.minutes * 60 / len(stores)
    violations = 0
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        for store in stores:
            if store == "sqlite":
                violations += soak(
                    "SQLite", f"sqlite:///{workdir / 'soak.db'}", 1, seconds, args, workdir
                )
            elif store == "postgresql":
                name = f"orch_soak_{uuid.uuid4().hex[:8]}"
                admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                try:
                    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
                    violations += soak("PostgreSQL", url, 2, seconds, args, workdir)
                finally:
                    with admin.connect() as c:
                        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()
            else:
                raise SystemExit(f"--stores: unknown store {store!r} (sqlite, postgresql)")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
