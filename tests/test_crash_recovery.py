"""The crash test: the real service, killed mid-dispatch and restarted, loses and repeats nothing.

Guarantees 2 and 3 across a crash; and SIGTERM stops the service cleanly.

The service runs as `orchestrator run` in a process of its own, on SQLite, with
a short dispatch poll, small dispatch batches and a one-second lease so that a
dead claimer's messages are taken over quickly. The first service's sandbox
takes 20 ms a send, so that it cannot finish before the kill however the
machine's load shares time between the service and this test: a kill after
the first sends always leaves work undone, some of it mid-send.

The sample streams are moved in time so that each one *ends* a minute ago, as
`ingest --shift-to-now` moves them to end now: their messages that are still
due fall due at once. (Moving them so that they *start* now would leave nothing
due for the first ten minutes: the later events of a stream cancel its early
messages.) Each
patient's time zone is set to one where it is now about noon, so that quiet
hours and send windows hold nothing back whatever the hour the test runs at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from orchestrator.store import check_invariants, connect
from orchestrator.store.tables import AuditRow, OutboxRow, ScheduledMessageRow
from tests.live import answers, free_port, wait_until
from tests.samples import ROOT, SAMPLE_FILES, sample_events, shifted

SCRIPT = Path(sys.executable).parent / "orchestrator"
FINAL = {"sent", "delivered", "failed", "suppressed", "cancelled", "expired"}
NDJSON = {"content-type": "application/x-ndjson"}


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


StartService = Callable[..., Service]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'o.db'}"


@pytest.fixture
def start_service(tmp_path: Path, db_url: str) -> Iterator[StartService]:
    """Starts `orchestrator run` on a free port over `db_url`; stops what is left afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "ORCHESTRATOR_DISPATCH_POLL_SECONDS": "0.05",
        "ORCHESTRATOR_LEASE_SECONDS": "1",
        # A batch's outcomes commit together: small batches make "sent" appear
        # a few at a time, so the kill after the first ones lands mid-dispatch.
        "ORCHESTRATOR_DISPATCH_BATCH": "5",
    }

    def start(**settings: str) -> Service:
        """`settings` are extra ORCHESTRATOR_* variables, named in lower case without the prefix."""
        port = free_port()
        log = tmp_path / f"service-{len(started) + 1}.log"
        command = [
            str(SCRIPT),
            "run",
            "--port",
            str(port),
            "--db",
            db_url,
            "--flows",
            str(ROOT / "flows"),
            "--templates",
            str(ROOT / "templates"),
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                env=env | {f"ORCHESTRATOR_{k.upper()}": v for k, v in settings.items()},
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or answers(f"{url}/healthz"),
            timeout=30,
            what="GET /healthz of the service",
        )
        assert process.poll() is None, log.read_text()
        return Service(process, url, log)

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    """The test's own connection to the service's store (SQLite in WAL mode)."""
    engine = connect(db_url)
    yield engine
    engine.dispose()


def noon_zone(now: datetime) -> str:
    """An IANA zone whose local time is now between 12:00 and 13:00."""
    offset = 12 - now.hour  # -11 .. +12; Etc/GMT names count the other way round
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


# Copies of the sample streams, with fresh ids: enough work that the kill lands
# while events are still arriving and messages are still going out, however
# fast this machine dispatches.
COPIES = 8


def ending_now(now: datetime) -> list[bytes]:
    """Every sample event as a one-line NDJSON body, each stream ending a minute before `now`.

    One event per request: this test is about the dispatcher, and a request
    is then one transaction that either happened or did not. The copies are
    interleaved, so every part of the ingest carries due messages.
    """
    zone = noon_zone(now)
    streams = []
    for path in SAMPLE_FILES:
        events = sample_events(path.stem)
        last = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
        streams.append([shifted(event, now - timedelta(minutes=1) - last) for event in events])
    bodies = []
    for position in range(max(len(events) for events in streams)):
        for copy in range(COPIES):
            for events in streams:
                if position < len(events):
                    moved = relabelled(events[position], copy)
                    moved["patient"]["timezone"] = zone
                    bodies.append(json.dumps(moved).encode() + b"\n")
    return bodies


def relabelled(event: dict[str, Any], copy: int) -> dict[str, Any]:
    """The event with its event, patient, appointment and encounter ids made unique to `copy`."""
    moved = json.loads(json.dumps(event))
    moved["id"] += f"-c{copy}"
    moved["patient"]["id"] += f"-c{copy}"
    for part in ("appointment", "encounter"):
        if moved.get(part):
            moved[part]["id"] += f"-c{copy}"
    return moved


@dataclass
class Ingest:
    """Posts bodies in order on a thread until they are done (`done`) or the service goes away."""

    url: str
    bodies: list[bytes]
    results: list[dict[str, Any]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=NDJSON, timeout=30) as client:
            for body in self.bodies:
                try:
                    response = client.post("/events", content=body)
                except httpx.TransportError:
                    return  # the service went away: not done
                if response.status_code != 202:
                    self.failed.append(response.status_code)
                    continue
                self.results.extend(response.json()["results"])
        self.done.set()


@dataclass(frozen=True)
class Message:
    key: str
    status: str
    due_at: datetime


def messages(store: Engine) -> list[Message]:
    table = ScheduledMessageRow
    with store.connect() as c:
        rows = c.execute(select(table.key, table.status, table.due_at)).all()
    return [Message(key, status, due_at) for key, status, due_at in rows]


def unsettled(rows: list[Message], now: datetime) -> list[Message]:
    """Messages that are due and not in a final status (scheduled, claimed, sending)."""
    return [m for m in rows if m.status not in FINAL and m.due_at <= now]


def test_a_service_killed_while_dispatching_and_restarted_loses_nothing_and_sends_nothing_twice(
    start_service: StartService, store: Engine
) -> None:
    bodies = ending_now(datetime.now(UTC))
    first = start_service(sandbox_latency_seconds="0.02")
    ingest = Ingest(first.url, bodies)
    thread = threading.Thread(target=ingest.run, daemon=True)
    thread.start()

    wait_until(
        lambda: sum(m.status == "sent" for m in messages(store)) >= 3,
        timeout=30,
        interval=0.005,
        what="three messages sent",
    )
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    thread.join(30)
    assert not ingest.failed, f"ingest answered {ingest.failed}; see {first.log}"
    at_kill = messages(store)
    assert not ingest.done.is_set() or unsettled(at_kill, datetime.now(UTC)), (
        "everything was done before the kill: the test crashed nothing"
    )

    second = start_service()
    replay = Ingest(second.url, bodies)
    replay.run()
    assert not replay.failed, f"ingest answered {replay.failed}; see {second.log}"
    assert len(replay.results) == len(bodies)
    assert {r["status"] for r in replay.results} <= {"accepted", "duplicate"}

    def settled() -> tuple[datetime, list[Message]] | None:
        now = datetime.now(UTC)
        rows = messages(store)
        return None if unsettled(rows, now) else (now, rows)

    now, rows = wait_until(settled, timeout=30, what="every due message in a final status")

    for message in rows:
        assert message.status in FINAL or (
            message.status == "scheduled" and message.due_at > now
        ), message
    sent = {m.key for m in rows if m.status == "sent"}
    assert len(sent) >= 3
    with store.connect() as c:
        repeated = c.execute(
            select(OutboxRow.key, func.count()).group_by(OutboxRow.key).having(func.count() > 1)
        ).all()
        outbox = set(c.execute(select(OutboxRow.key)).scalars())
        audited = c.execute(
            select(AuditRow.key, func.count())
            .where(AuditRow.status == "sent")
            .group_by(AuditRow.key)
        ).all()
    assert repeated == [], "sent twice"
    assert outbox == sent, "the outbox and the messages' statuses disagree"
    assert dict(audited) == dict.fromkeys(sent, 1), "a send without exactly one audit row"
    report = check_invariants(store, due_before=now)
    assert report.violations == ()


def test_sigterm_ends_the_service_with_exit_status_0(start_service: StartService) -> None:
    service = start_service()
    body = b"".join(json.dumps(e).encode() + b"\n" for e in sample_events("cardiology-consult"))
    assert httpx.post(f"{service.url}/events", content=body, headers=NDJSON).status_code == 202

    status = service.stop(timeout=30)

    log = service.log.read_text()
    assert "Application shutdown complete." in log
    assert status == 0, f"exit status {status}"
