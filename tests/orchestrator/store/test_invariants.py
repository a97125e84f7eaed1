"""The invariant checker, on each backend: it finds each kind of violation, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.decisions import record
from orchestrator.event import Channel
from orchestrator.store import OutboxEntry, Sent, SqlStore, check_invariants
from orchestrator.store.rows import audit_row
from orchestrator.store.tables import AuditRow, ScheduledMessageRow
from tests.builders import T0, at
from tests.orchestrator.store.test_store import LEASE, cancel, message, schedule

runner = CliRunner(env={"FORCE_COLOR": None})


def send(store: SqlStore, key: str, *, when: timedelta = timedelta(0)) -> None:
    """Claim, mark sending and record `key` as sent (as the dispatcher does), with its outbox row."""
    now = T0 + when
    store.claim_due(now, "a", now + LEASE, 100)
    sent = message(key)
    assert store.begin_sends({key: Channel.SMS}, "a", now) == {key: 1}
    store.outbox_add(OutboxEntry(key, "sms", "+15555550101", None, "hello", None, now))
    assert store.finish_sent([Sent(sent, now, Channel.SMS, f"sb-{key}")], "a") == {key}


def audit(store: SqlStore, key: str, status: str) -> None:
    with store.transactions.write() as c:
        c.execute(insert(AuditRow), audit_row(record(message(key), T0, status, "test")))


def violations(store: SqlStore) -> dict[str, tuple[int, tuple[str, ...]]]:
    report = check_invariants(store, due_before=at(days=1))
    assert report.ok is not report.violations
    return {v.name: (v.count, v.examples) for v in report.violations}


def test_a_store_where_everything_went_right_keeps_every_invariant(store: SqlStore) -> None:
    schedule(store, message("m-1"), message("m-2"), message("m-3", due_at=at(days=2)))
    send(store, "m-1")
    cancel(store, message("m-2"))

    report = check_invariants(store, due_before=at(days=1))

    assert report.ok
    assert report.checked == ("sent_after_final", "sent_twice", "unsettled", "sent_late")


def test_a_send_audited_after_a_cancellation_is_a_violation(store: SqlStore) -> None:
    schedule(store, message("m-1"), message("m-2"))
    cancel(store, message("m-1"))
    audit(store, "m-1", "sent")
    send(store, "m-2")

    assert violations(store) == {"sent_after_final": (1, ("m-1",))}


def test_a_cancelled_message_found_in_the_outbox_is_a_violation(store: SqlStore) -> None:
    schedule(store, message("m-1"))
    cancel(store, message("m-1"))
    store.outbox_add(OutboxEntry("m-1", "sms", "+15555550101", None, "hello", None, T0))

    assert violations(store) == {"sent_after_final": (1, ("m-1",))}


def test_a_message_sent_twice_is_a_violation_whichever_record_shows_it(store: SqlStore) -> None:
    schedule(store, message("m-1"), message("m-2"))
    send(store, "m-1")
    send(store, "m-2")
    audit(store, "m-1", "sent")
    store.outbox_add(OutboxEntry("m-2", "email", "ana@example.org", "hi", "hello", None, T0))

    assert violations(store) == {"sent_twice": (2, ("m-1", "m-2"))}


def test_a_due_message_left_scheduled_claimed_or_sending_is_a_violation(store: SqlStore) -> None:
    schedule(store, *(message(f"m-{i}") for i in range(7)), message("later", due_at=at(days=2)))
    store.claim_due(T0, "a", T0 + LEASE, 2)
    store.begin_sends({"m-0": Channel.SMS}, "a", T0)

    count, examples = violations(store)["unsettled"]

    assert count == 7
    assert examples == ("m-0", "m-1", "m-2", "m-3", "m-4")


def test_a_message_sent_after_it_expired_is_a_violation(store: SqlStore) -> None:
    schedule(store, message("m-1", expires_at=at(hours=1)), message("m-2", expires_at=at(hours=3)))
    send(store, "m-1", when=timedelta(hours=2))
    send(store, "m-2", when=timedelta(hours=2))

    assert violations(store) == {"sent_late": (1, ("m-1",))}


def test_a_message_without_expiry_sent_a_day_after_it_was_due_is_a_violation(
    store: SqlStore,
) -> None:
    schedule(store, message("m-1"), message("m-2"))
    send(store, "m-1", when=timedelta(hours=23))
    send(store, "m-2", when=timedelta(hours=24))

    assert violations(store) == {"sent_late": (1, ("m-2",))}


# -- the command ------------------------------------------------------------------


@pytest.fixture
def sqlite_store(sqlite_url: str) -> SqlStore:
    from orchestrator.store import connect

    return SqlStore(connect(sqlite_url))


def test_audit_check_exits_0_when_every_invariant_holds(
    sqlite_url: str, sqlite_store: SqlStore
) -> None:
    schedule(sqlite_store, message("m-1"))
    send(sqlite_store, "m-1")

    result = runner.invoke(app, ["audit", "check", "--db", sqlite_url])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ok   sent_after_final",
        "ok   sent_twice",
        "ok   unsettled",
        "ok   sent_late",
    ]


def test_audit_check_names_each_violation_and_exits_1(
    sqlite_url: str, sqlite_store: SqlStore
) -> None:
    schedule(sqlite_store, message("m-1"), message("m-2", due_at=at(days=400)))
    with sqlite_store.transactions.write() as c:
        c.execute(update(ScheduledMessageRow).values(status="claimed"))

    text = runner.invoke(
        app, ["audit", "check", "--db", sqlite_url, "--due-before", "2027-01-01T00:00:00Z"]
    )
    as_json = runner.invoke(
        app,
        [
            "audit",
            "check",
            "--db",
            sqlite_url,
            "--format",
            "json",
            "--due-before",
            "2028-01-01T00:00:00Z",
        ],
    )

    assert text.exit_code == 1
    assert "FAIL unsettled: 1 message(s)" in text.output
    assert "e.g. m-1" in text.output
    assert as_json.exit_code == 1
    assert '"invariant": "unsettled", "ok": false, "count": 2' in as_json.output


def test_audit_check_refuses_a_time_without_an_offset(tmp_path: Path, sqlite_url: str) -> None:
    result = runner.invoke(
        app, ["audit", "check", "--db", sqlite_url, "--due-before", "2026-03-01T00:00"]
    )

    assert result.exit_code == 2
    assert "UTC offset" in result.output
