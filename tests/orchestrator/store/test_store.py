"""The store contract: every test here runs on SQLite and on PostgreSQL.

The `store` fixture (tests/conftest.py) is parametrized over both backends,
so this module is the one contract suite the two must pass; the PostgreSQL
only behaviour (claimers on separate connections) closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, insert, select, text
from sqlalchemy.exc import OperationalError

from orchestrator.engine import advance
from orchestrator.errors import StoreError
from orchestrator.event import Channel, Patient
from orchestrator.flows.timing import Anchor
from orchestrator.journey import Journey, Recipient, ScheduledMessage
from orchestrator.message_status import MessageStatus
from orchestrator.patient_merge import KnownPatient, Stamp, merge_patient
from orchestrator.policies import ConsentRecord
from orchestrator.ports import MessageView
from orchestrator.store import (
    OutboxEntry,
    Sent,
    SqlStore,
    codec,
    connect,
    head,
    pending,
    upgrade,
)
from orchestrator.store.tables import Base, DeliveryAttemptRow, PatientRow, ScheduledMessageRow
from tests import store_reads
from tests.builders import T0, at, make_event, make_flow
from tests.conftest import EVERY_BACKEND

FLOW = make_flow()
LEASE = timedelta(minutes=2)


def message(
    key: str = "m-1",
    *,
    due_at: datetime = T0,
    patient_id: str = "p-1",
    flow_id: str = "test-flow",
    message_id: str = "reminder_72h",
    expires_at: datetime | None = None,
) -> ScheduledMessage:
    return ScheduledMessage(
        key=key,
        flow_id=flow_id,
        flow_version=1,
        episode_id="ep-1",
        stage_id="booked",
        message_id=message_id,
        template="reminder",
        channels=(Channel.SMS, Channel.EMAIL),
        recipient=Recipient(patient_id),
        due_at=due_at,
        expires_at=expires_at,
        anchor=Anchor.APPOINTMENT_START,
        created_by="evt-1",
        timezone="America/Chicago",
        appointment_id="a-1",
    )


def schedule(store: SqlStore, *messages: ScheduledMessage, now: datetime = T0) -> None:
    with store.unit(now) as unit:
        for each in messages:
            unit.schedule(each, "evt-1")


def cancel(store: SqlStore, *messages: ScheduledMessage, now: datetime = T0) -> None:
    with store.unit(now) as unit:
        for each in messages:
            unit.cancel(each, "appointment_cancelled", "evt-2")


def row(store: SqlStore, key: str) -> MessageView:
    return next(m for m in store.messages() if m.key == key)


def lease_of(store: SqlStore, key: str) -> tuple[str, str | None, datetime | None]:
    table = ScheduledMessageRow
    with store.engine.connect() as c:
        status, owner, until = c.execute(
            select(table.status, table.lease_owner, table.lease_until).where(table.key == key)
        ).one()
    return status, owner, until


def claim(store: SqlStore, now: datetime, owner: str = "a", limit: int = 100) -> list[str]:
    return [c.message.key for c in store.claim_due(now, owner, now + LEASE, limit)]


# -- migrations -----------------------------------------------------------------


def test_migrations_apply_and_leave_nothing_pending(store: SqlStore) -> None:
    assert head() is not None
    assert pending(store.engine) is False
    upgrade(store.engine)  # a second upgrade is a no-op
    assert pending(store.engine) is False


def test_migrated_schema_equals_the_models(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_fresh_database_reports_pending_migrations(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert pending(engine) is True
        upgrade(engine)
        assert pending(engine) is False
    finally:
        engine.dispose()


# -- one unit of work per batch ---------------------------------------------------


def _booking() -> tuple[Any, Journey, list[ScheduledMessage]]:
    event = make_event(id="evt-unit", start=at(days=8))
    decision = advance(Journey.start("p-1", FLOW.id), event, FLOW, T0)
    messages = [a.message for a in decision.actions if hasattr(a, "message")]
    return event, decision.journey, messages


def test_unit_of_work_writes_journey_messages_processed_and_audit_together(
    store: SqlStore,
) -> None:
    event, journey, messages = _booking()
    with store.unit(T0) as unit:
        unit.save_patient(KnownPatient(event.patient, event.occurred_at))
        unit.save_journey(journey, 1)
        for each in messages:
            unit.schedule(each, event.id)
        unit.mark_processed(event)

    assert store_reads.patient(store, "p-1") == event.patient
    assert store_reads.journey(store, "p-1", FLOW.id, 1) == journey
    assert [e.id for e in store.episodes("p-1")] == [journey.episodes[0].id]
    assert {m.key for m in store.messages()} == {m.key for m in messages}
    assert {m.status for m in store.messages()} == {"scheduled"}
    audit = store.audit()
    assert sorted(a.key for a in audit) == sorted(m.key for m in messages)
    assert {(a.status, a.event_id) for a in audit} == {("scheduled", event.id)}
    with store.unit(T0) as unit:
        assert unit.processed([event.id, "evt-other"]) == {event.id}


def test_what_is_known_of_a_patient_reads_back_with_the_stamp_behind_each_field(
    store: SqlStore,
) -> None:
    fact = Patient("p-1", phone="+15555550101", language="es")
    known = merge_patient(None, fact, Stamp(T0, "evt-1"))
    with store.unit(T0) as unit:
        unit.save_patient(known)

    with store.unit(T0) as unit:
        assert unit.known_patients(["p-1", "p-2"]) == {"p-1": known}


def test_a_patient_row_from_before_field_stamps_counts_its_values_as_stated_at_its_time(
    store: SqlStore,
) -> None:
    # As migration 0005 leaves a row the old code wrote: no stamps, email erased.
    old = Patient("p-1", phone="+15555550101")
    with store.unit(T0) as unit:
        unit.connection.execute(
            insert(PatientRow).values(
                id="p-1", snapshot=codec.dumps(old), snapshot_at=at(hours=2), field_stamps=None
            )
        )

    with store.unit(T0) as unit:
        known = unit.known_patients(["p-1"])["p-1"]
    assert known.stamps == {"phone": Stamp(at(hours=2), "")}
    # An older fact fills the erased email, and does not undo the phone.
    older = Patient("p-1", phone="+15555550102", email="patient@example.org")
    merged = merge_patient(known, older, Stamp(at(hours=1), "evt-0")).patient
    assert (merged.phone, merged.email) == ("+15555550101", "patient@example.org")


def test_failure_inside_the_unit_writes_nothing(store: SqlStore) -> None:
    event, journey, messages = _booking()
    with pytest.raises(RuntimeError), store.unit(T0) as unit:
        unit.save_patient(KnownPatient(event.patient, event.occurred_at))
        unit.save_journey(journey, 1)
        for each in messages:
            unit.schedule(each, event.id)
        unit.mark_processed(event)
        raise RuntimeError("the batch failed")

    assert store_reads.patient(store, "p-1") is None
    assert store_reads.journey(store, "p-1", FLOW.id, 1) is None
    assert store.episodes("p-1") == []
    assert store.messages() == []
    assert store.audit() == []
    with store.unit(T0) as unit:
        assert unit.processed([event.id]) == set()


def test_failed_flush_rolls_back_what_it_had_written(store: SqlStore) -> None:
    # The second processed record collides with the first after the patient,
    # journey and episodes were written in the same transaction.
    event, journey, messages = _booking()
    with pytest.raises(StoreError), store.unit(T0) as unit:
        unit.save_patient(KnownPatient(event.patient, event.occurred_at))
        unit.save_journey(journey, 1)
        for each in messages:
            unit.schedule(each, event.id)
        unit.mark_processed(event)
        unit.mark_processed(event)

    assert store_reads.patient(store, "p-1") is None
    assert store_reads.journey(store, "p-1", FLOW.id, 1) is None
    assert store.episodes("p-1") == []
    assert store.messages() == []
    assert store.audit() == []


# -- datetimes ----------------------------------------------------------------------


def test_datetimes_read_back_aware_utc_whatever_zone_they_were_written_in(
    store: SqlStore,
) -> None:
    chicago = datetime(2026, 3, 10, 9, 30, tzinfo=ZoneInfo("America/Chicago"))
    schedule(store, message(due_at=chicago), now=chicago)

    due_at = row(store, "m-1").due_at
    assert due_at == chicago
    assert due_at.tzinfo is not None and due_at.utcoffset() == timedelta(0)
    assert due_at == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # CDT, UTC-5
    (entry,) = store.audit()
    assert entry.at.utcoffset() == timedelta(0)
    assert entry.at == chicago
    (claimed,) = store.claim_due(chicago, "a", chicago + LEASE, 10)
    assert claimed.due_at == chicago and claimed.due_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError):
        store.reject(b"{}", "test", "bad", datetime(2026, 3, 2, 14, 0))
    assert store_reads.rejected(store) == []


# -- scheduling and cancelling --------------------------------------------------------


def test_scheduling_the_same_key_twice_keeps_one_row(store: SqlStore) -> None:
    schedule(store, message())
    schedule(store, message(), now=at(hours=1))

    assert [m.key for m in store.messages()] == ["m-1"]


def test_update_of_a_pending_message_keeps_its_due_at_and_takes_the_new_expiry(
    store: SqlStore,
) -> None:
    schedule(store, message(due_at=at(hours=1)))
    schedule(store, message(due_at=at(hours=5), expires_at=at(days=2)), now=at(minutes=30))

    assert row(store, "m-1").due_at == at(hours=1)
    (claimed,) = store.claim_due(at(hours=1), "a", at(hours=1) + LEASE, 10)
    assert claimed.message.expires_at == at(days=2)


def test_updates_of_several_pending_messages_in_one_unit_all_land(store: SqlStore) -> None:
    keys = ("m-1", "m-2", "m-3")
    schedule(
        store, *(message(k, due_at=at(hours=1, minutes=-1 if k == "m-1" else 0)) for k in keys)
    )
    # The earliest, m-1, is claimed: no longer pending.
    assert claim(store, at(hours=1), limit=1) == ["m-1"]

    schedule(store, *(message(k, expires_at=at(days=2)) for k in keys), now=at(minutes=30))

    claimed = store.claim_due(at(hours=1), "b", at(hours=1) + LEASE, 10)
    assert {c.message.key: c.message.expires_at for c in claimed} == {
        "m-2": at(days=2),
        "m-3": at(days=2),
    }


def test_update_of_a_deferred_message_keeps_the_deferral(store: SqlStore) -> None:
    m = message(due_at=at(hours=1))
    schedule(store, m)
    store.claim_due(at(hours=1), "a", at(hours=1) + LEASE, 10)
    assert store.reschedule(m, "a", at(hours=1), at(hours=18), "deferred:quiet_hours")

    schedule(store, replace(m, expires_at=at(days=3)), now=at(hours=2))

    assert row(store, "m-1").due_at == at(hours=18)
    assert row(store, "m-1").status == "scheduled"


def test_scheduling_again_does_not_revive_a_sent_message(store: SqlStore) -> None:
    m = message()
    schedule(store, m)
    store.claim_due(T0, "a", T0 + LEASE, 10)
    store_reads.begin_send(store, m.key, "a", Channel.SMS, T0)
    store.finish(m, "a", T0, "sent", None, channel=Channel.SMS)

    schedule(store, m, now=at(hours=1))

    assert row(store, "m-1").status == "sent"
    assert claim(store, at(hours=2)) == []


def test_cancel_moves_a_pending_message_to_cancelled_with_its_reason(store: SqlStore) -> None:
    schedule(store, message())
    cancel(store, message())

    assert (row(store, "m-1").status, row(store, "m-1").reason) == (
        "cancelled",
        "appointment_cancelled",
    )
    assert [(a.status, a.reason) for a in store.audit()] == [
        ("scheduled", None),
        ("cancelled", "appointment_cancelled"),
    ]
    assert claim(store, at(hours=1)) == []


def test_cancel_leaves_a_sent_message_sent(store: SqlStore) -> None:
    m = message()
    schedule(store, m)
    store.claim_due(T0, "a", T0 + LEASE, 10)
    store_reads.begin_send(store, m.key, "a", Channel.SMS, T0)
    assert store.finish(m, "a", T0, "sent", None, channel=Channel.SMS, provider_id="x-1")

    cancel(store, m, now=at(hours=1))

    assert row(store, "m-1").status == "sent"
    assert row(store, "m-1").reason is None


def test_cancel_of_a_sent_message_is_not_audited_as_cancelled(store: SqlStore) -> None:
    # The audit must agree with the store: the message went, nothing was cancelled.
    m = message()
    schedule(store, m)
    store.claim_due(T0, "a", T0 + LEASE, 10)
    store_reads.begin_send(store, m.key, "a", Channel.SMS, T0)
    store.finish(m, "a", T0, "sent", None, channel=Channel.SMS)

    cancel(store, m, now=at(hours=1))

    assert [a.status for a in store.audit()] == ["scheduled", "sent"]


# -- claims and leases -------------------------------------------------------------------


def test_claim_returns_only_due_messages_ordered_by_due_at(store: SqlStore) -> None:
    # Key order and due order differ on purpose.
    schedule(
        store,
        message("m-a", due_at=at(hours=3)),
        message("m-b", due_at=at(hours=1)),
        message("m-c", due_at=at(hours=2)),
        message("m-d", due_at=at(hours=5)),
    )

    assert claim(store, at(hours=4)) == ["m-b", "m-c", "m-a"]
    assert row(store, "m-d").status == "scheduled"


def test_claim_takes_the_earliest_due_up_to_the_limit(store: SqlStore) -> None:
    schedule(
        store,
        message("m-a", due_at=at(hours=3)),
        message("m-b", due_at=at(hours=1)),
        message("m-c", due_at=at(hours=2)),
    )

    assert sorted(claim(store, at(hours=4), limit=2)) == ["m-b", "m-c"]
    assert claim(store, at(hours=4), owner="b", limit=2) == ["m-a"]


@pytest.mark.backends(*EVERY_BACKEND)
def test_messages_due_at_one_instant_fill_a_batch_in_key_order_on_every_backend(
    store: SqlStore,
) -> None:
    # Which of them a batch holds decides which one a frequency cap lets through:
    # simulate (memory) and run (SQL) must pick the same.
    schedule(store, *(message(f"k{i}", due_at=at(hours=1)) for i in reversed(range(10))))

    assert claim(store, at(hours=2), limit=3) == ["k0", "k1", "k2"]
    assert claim(store, at(hours=2), owner="b", limit=3) == ["k3", "k4", "k5"]


def test_the_due_claim_reads_its_order_from_an_index_without_sorting(store: SqlStore) -> None:
    # With thousands of messages due at one instant (reminders at 09:00, quiet hours
    # ending) a sort on the key read every one of them for each batch of 100.
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "due_at <=" in statement and statement.lstrip().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", keep)
    try:
        claim(store, T0)
    finally:
        event.remove(store.engine, "before_cursor_execute", keep)
    (statement, parameters), *_ = statements
    with store.engine.connect() as c:
        if store.dialect == "postgresql":
            # A few rows only: ask for the plan the planner takes for a large table.
            # With sorts priced out, a Sort step remains only when no index gives the
            # claim's order (on a tiny table a sort of three rows is otherwise cheaper).
            c.exec_driver_sql("SET enable_seqscan = off")
            c.exec_driver_sql("SET enable_sort = off")
            plan = [r[0] for r in c.exec_driver_sql(f"EXPLAIN {statement}", parameters)]
        else:
            plan = [r[-1] for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert not [step for step in plan if "Sort" in step or "TEMP B-TREE" in step], plan
    assert any("status_due_at_key" in step for step in plan), plan


def test_claim_sets_the_lease(store: SqlStore) -> None:
    schedule(store, message())

    (claimed,) = store.claim_due(at(minutes=1), "a", at(minutes=3), 10)

    assert (claimed.status, claimed.attempts, claimed.channel) == ("scheduled", 0, None)
    assert claimed.message == message()
    assert lease_of(store, "m-1") == ("claimed", "a", at(minutes=3))


def test_message_under_a_live_lease_is_not_claimed_again(store: SqlStore) -> None:
    schedule(store, message())
    assert claim(store, T0, owner="a") == ["m-1"]

    assert claim(store, at(minutes=1), owner="b") == []
    assert claim(store, T0 + LEASE, owner="b") == []  # the lease runs to its last instant
    assert lease_of(store, "m-1")[1] == "a"


def test_message_whose_lease_expired_is_claimed_again(store: SqlStore) -> None:
    schedule(store, message())
    claim(store, T0, owner="a")

    later = T0 + LEASE + timedelta(seconds=1)
    (claimed,) = store.claim_due(later, "b", later + LEASE, 10)

    assert (claimed.message.key, claimed.status) == ("m-1", "claimed")
    assert lease_of(store, "m-1") == ("claimed", "b", later + LEASE)


def test_message_abandoned_mid_send_is_claimed_again_as_sending(store: SqlStore) -> None:
    schedule(store, message())
    claim(store, T0, owner="a")
    assert store_reads.begin_send(store, "m-1", "a", Channel.SMS, T0) == 1

    later = T0 + LEASE + timedelta(seconds=1)
    (claimed,) = store.claim_due(later, "b", later + LEASE, 10)

    assert (claimed.status, claimed.channel, claimed.attempts) == ("sending", "sms", 1)
    assert lease_of(store, "m-1") == ("sending", "b", later + LEASE)
    # The first claimer lost it: it can neither finish nor put it back.
    assert store.finish(message(), "a", later, "sent", None) is False
    assert store.reschedule(message(), "a", later, at(hours=1), "retry:x") is False
    assert row(store, "m-1").status == "sending"


def test_begin_send_counts_attempts_and_marks_the_message_sending(store: SqlStore) -> None:
    schedule(store, message())
    claim(store, T0)

    assert store_reads.begin_send(store, "m-1", "a", Channel.EMAIL, T0) == 1

    current = row(store, "m-1")
    assert (current.status, current.channel, current.attempts) == (
        "sending",
        "email",
        1,
    )
    # Already sending: a second hand-over is refused.
    assert store_reads.begin_send(store, "m-1", "a", Channel.EMAIL, T0) is None


def test_begin_send_returns_none_when_the_message_was_cancelled_after_the_claim(
    store: SqlStore,
) -> None:
    schedule(store, message())
    claim(store, T0)
    cancel(store, message())

    assert store_reads.begin_send(store, "m-1", "a", Channel.SMS, T0) is None
    assert row(store, "m-1").status == "cancelled"
    assert row(store, "m-1").attempts == 0


def test_begin_send_by_another_claimer_returns_none(store: SqlStore) -> None:
    schedule(store, message())
    claim(store, T0, owner="a")

    assert store_reads.begin_send(store, "m-1", "b", Channel.SMS, T0) is None
    assert row(store, "m-1").status == "claimed"


def test_finish_by_the_lease_owner_records_the_final_status_and_its_audit(
    store: SqlStore,
) -> None:
    m = message()
    schedule(store, m)
    claim(store, T0)
    store_reads.begin_send(store, m.key, "a", Channel.SMS, T0)

    assert store.finish(
        m,
        "a",
        at(minutes=1),
        "sent",
        None,
        channel=Channel.SMS,
        language="en",
        provider_id="sandbox-1",
        attempt_outcome="sent",
    )

    current = row(store, "m-1")
    assert (current.status, current.channel, current.sent_at) == (
        "sent",
        "sms",
        at(minutes=1),
    )
    assert lease_of(store, "m-1") == ("sent", None, None)
    last = store.audit()[-1]
    assert (last.status, last.channel, last.language, last.at) == (
        "sent",
        "sms",
        "en",
        at(minutes=1),
    )
    # Final: no second finish, no claim.
    assert store.finish(m, "a", at(minutes=2), "failed", "x") is False
    assert claim(store, at(days=1)) == []


def test_begin_sends_marks_a_batch_each_on_its_channel_and_leaves_out_lost_claims(
    store: SqlStore,
) -> None:
    schedule(store, *(message(f"m-{n}") for n in range(1, 5)))
    claim(store, T0, owner="a")
    cancel(store, message("m-3"))
    store.reschedule(message("m-4"), "a", T0, at(hours=1), "deferred:quiet_hours")

    attempts = store.begin_sends(
        {"m-1": Channel.SMS, "m-2": Channel.EMAIL, "m-3": Channel.SMS, "m-4": Channel.SMS},
        "a",
        T0,
    )

    assert attempts == {"m-1": 1, "m-2": 1}
    assert [(row(store, k).status, row(store, k).channel) for k in ("m-1", "m-2")] == [
        ("sending", "sms"),
        ("sending", "email"),
    ]
    assert [attempts_of(store, k) for k in ("m-1", "m-2", "m-3", "m-4")] == [
        [(1, "pending")],
        [(1, "pending")],
        [],
        [],
    ]


def test_finish_sent_records_each_send_with_its_own_values_and_skips_lost_claims(
    store: SqlStore,
) -> None:
    schedule(store, message("m-1"), message("m-2"), message("m-3", due_at=at(minutes=1)))
    assert sorted(claim(store, T0, owner="a")) == ["m-1", "m-2"]
    store.begin_sends({"m-1": Channel.SMS, "m-2": Channel.EMAIL}, "a", T0)
    assert claim(store, at(minutes=1), owner="b") == ["m-3"]  # another claimer's
    store.begin_sends({"m-3": Channel.SMS}, "b", at(minutes=1))
    sends = [
        Sent(message("m-1"), at(minutes=1), Channel.SMS, "sandbox-1", "en"),
        Sent(message("m-2"), at(minutes=2), Channel.EMAIL, "sandbox-2", "en", "language_fallback"),
        Sent(message("m-3"), at(minutes=3), Channel.SMS, "sandbox-3", "en"),
    ]

    assert store.finish_sent(sends, "a") == {"m-1", "m-2"}

    recorded = [
        {k: getattr(row(store, key), k) for k in ("status", "channel", "sent_at", "reason")}
        for key in ("m-1", "m-2", "m-3")
    ]
    assert recorded == [
        {"status": "sent", "channel": "sms", "sent_at": at(minutes=1), "reason": None},
        {
            "status": "sent",
            "channel": "email",
            "sent_at": at(minutes=2),
            "reason": "language_fallback",
        },
        {"status": "sending", "channel": "sms", "sent_at": None, "reason": None},
    ]
    assert [lease_of(store, k)[1] for k in ("m-1", "m-2", "m-3")] == [None, None, "b"]
    assert [attempts_of(store, k) for k in ("m-1", "m-2", "m-3")] == [
        [(1, "sent")],
        [(1, "sent")],
        [(1, "pending")],
    ]
    audited = [(a.key, a.status, a.channel, a.at) for a in store.audit() if a.status == "sent"]
    assert sorted(audited) == [
        ("m-1", "sent", "sms", at(minutes=1)),
        ("m-2", "sent", "email", at(minutes=2)),
    ]


def test_finish_by_another_claimer_changes_nothing(store: SqlStore) -> None:
    m = message()
    schedule(store, m)
    claim(store, T0, owner="a")

    assert store.finish(m, "b", T0, "suppressed", "consent") is False

    assert lease_of(store, "m-1") == ("claimed", "a", T0 + LEASE)
    assert [a.status for a in store.audit()] == ["scheduled"]


def test_reschedule_by_the_lease_owner_puts_the_message_back_due_later(
    store: SqlStore,
) -> None:
    m = message()
    schedule(store, m)
    claim(store, T0)

    assert store.reschedule(m, "a", T0, at(hours=18), "deferred:quiet_hours")

    current = row(store, "m-1")
    assert (current.status, current.due_at, current.reason) == (
        "scheduled",
        at(hours=18),
        "deferred:quiet_hours",
    )
    assert lease_of(store, "m-1") == ("scheduled", None, None)
    last = store.audit()[-1]
    assert (last.status, last.reason, last.due_at) == (
        "scheduled",
        "deferred:quiet_hours",
        at(hours=18),
    )
    assert claim(store, at(hours=17), owner="b") == []
    assert claim(store, at(hours=18), owner="b") == ["m-1"]


def test_reschedule_by_another_claimer_changes_nothing(store: SqlStore) -> None:
    m = message()
    schedule(store, m)
    claim(store, T0, owner="a")

    assert store.reschedule(m, "b", T0, at(hours=18), "retry:x") is False

    assert row(store, "m-1").due_at == T0
    assert lease_of(store, "m-1") == ("claimed", "a", T0 + LEASE)


def test_unsend_returns_a_sending_message_to_its_claimer(store: SqlStore) -> None:
    schedule(store, message())
    claim(store, T0)
    store_reads.begin_send(store, "m-1", "a", Channel.SMS, T0)

    assert store.unsend("m-1", "b", T0, "failed", "rejected") is False
    assert store.unsend("m-1", "a", T0, "failed", "rejected") is True

    assert lease_of(store, "m-1") == ("claimed", "a", T0 + LEASE)
    assert store_reads.begin_send(store, "m-1", "a", Channel.EMAIL, T0) == 2


def attempts_of(store: SqlStore, key: str) -> list[tuple[int, str]]:
    table = DeliveryAttemptRow
    with store.engine.connect() as c:
        rows = c.execute(
            select(table.attempt, table.outcome).where(table.key == key).order_by(table.attempt)
        ).all()
    return [(attempt, outcome) for attempt, outcome in rows]


def test_calls_together_commit_as_one_with_every_audit_row_and_attempt(
    store: SqlStore,
) -> None:
    sent, deferred, refused = message("m-1"), message("m-2"), message("m-3")
    schedule(store, sent, deferred, refused)
    claim(store, T0)
    store_reads.begin_send(store, "m-1", "a", Channel.SMS, T0)
    store_reads.begin_send(store, "m-3", "a", Channel.SMS, T0)

    with store.together():
        store.finish(sent, "a", T0, "sent", None, channel=Channel.SMS, attempt_outcome="sent")
        store.reschedule(deferred, "a", T0, at(hours=18), "deferred:quiet_hours")
        # A refusal then the next channel, in one block: the close reaches only attempt 1.
        store.unsend("m-3", "a", T0, "failed", "rejected")
        assert store_reads.begin_send(store, "m-3", "a", Channel.EMAIL, T0) == 2

    assert [row(store, k).status for k in ("m-1", "m-2", "m-3")] == [
        "sent",
        "scheduled",
        "sending",
    ]
    # Audit rows of different shapes all land: the deferral keeps its due time.
    audit = {(a.key, a.status): a for a in store.audit() if a.status != "scheduled" or a.reason}
    assert audit[("m-2", "scheduled")].due_at == at(hours=18)
    assert ("m-1", "sent") in audit
    assert attempts_of(store, "m-1") == [(1, "sent")]
    assert attempts_of(store, "m-3") == [(1, "failed"), (2, "pending")]


def test_an_error_inside_together_rolls_every_call_back(store: SqlStore) -> None:
    first, second = message("m-1"), message("m-2")
    schedule(store, first, second)
    claim(store, T0)

    with pytest.raises(RuntimeError), store.together():
        store.finish(first, "a", T0, "suppressed", "consent")
        store.finish(second, "a", T0, "suppressed", "consent")
        raise RuntimeError("the batch broke")

    assert [row(store, k).status for k in ("m-1", "m-2")] == ["claimed", "claimed"]
    assert [a.status for a in store.audit()] == ["scheduled", "scheduled"]


# -- PostgreSQL: claimers on separate connections ------------------------------------------


@pytest.fixture
def two_claimers(pg_database: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores on separate engines; the second gives up on a row lock after 5 s.

    Without SKIP LOCKED the second claimer would wait for the first, which
    waits for it: the timeout turns that hang into a failure.
    """
    first = connect(pg_database)
    second = create_engine(pg_database, connect_args={"options": "-c lock_timeout=5000"})
    try:
        yield SqlStore(first), SqlStore(second)
    finally:
        store_reads.purge(SqlStore(first))
        first.dispose()
        second.dispose()


def test_concurrent_claimers_get_disjoint_sets_on_postgresql(
    two_claimers: tuple[SqlStore, SqlStore],
) -> None:
    first, second = two_claimers
    schedule(first, *[message(f"m-{i}", due_at=at(minutes=i)) for i in range(6)])
    now = at(hours=1)
    theirs: list[str] = []
    interleaved: list[bool] = []

    def claim_while_first_holds_its_rows(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Right after the first claimer locked its candidates, inside its transaction.
        if "SKIP LOCKED" in statement and cursor.rowcount > 0 and not interleaved:
            interleaved.append(True)
            theirs.extend(claim(second, now, owner="second", limit=10))

    event.listen(first.engine, "after_cursor_execute", claim_while_first_holds_its_rows)
    mine = claim(first, now, owner="first", limit=3)

    assert interleaved == [True]
    assert sorted(mine) == ["m-0", "m-1", "m-2"]
    assert sorted(theirs) == ["m-3", "m-4", "m-5"]
    assert {lease_of(first, k)[1] for k in mine} == {"first"}
    assert {lease_of(first, k)[1] for k in theirs} == {"second"}


# -- rejected input ------------------------------------------------------------------


def test_rejected_input_is_kept_with_its_reason(store: SqlStore) -> None:
    store.reject(b'{"id": "evt-9"', "api", "line 1: not valid JSON", T0)

    (kept,) = store_reads.rejected(store)
    assert (kept.body, kept.source, kept.reason, kept.truncated) == (
        b'{"id": "evt-9"',
        "api",
        "line 1: not valid JSON",
        False,
    )
    assert kept.received_at == T0


def test_rejected_input_over_64_kib_is_cut_and_marked_truncated(store: SqlStore) -> None:
    limit = 64 * 1024
    store.reject(b"a" * limit, "api", "exactly the limit", T0)
    store.reject(b"b" * (limit + 100), "api", "too large", at(minutes=1))

    newest, oldest = store_reads.rejected(store)
    assert (len(oldest.body), oldest.truncated) == (limit, False)
    assert (newest.body, newest.truncated) == (b"b" * limit, True)


# -- outbox ------------------------------------------------------------------------------


def test_outbox_finds_what_was_added_by_key_and_channel(store: SqlStore) -> None:
    entry = OutboxEntry("m-1", "sms", "+15555550101", None, "Reminder", None, T0)
    first = store.outbox_add(entry)
    store.outbox_add(replace(entry, key="m-2"))
    store.outbox_add(entry)  # a duplicate shows, and find answers with the first

    assert store.outbox_find("m-1", "sms") == first
    assert store.outbox_find("m-1", "email") is None
    assert store.outbox_find("m-3", "sms") is None
    listed = store.outbox()
    assert [e.key for e in listed] == ["m-1", "m-2", "m-1"]
    assert listed[-1] == entry


# -- audit ---------------------------------------------------------------------------------


def test_audit_filters_by_flow_since_status_and_patient(store: SqlStore) -> None:
    a = message("m-a", flow_id="flow-a")
    b = message("m-b", flow_id="flow-b", patient_id="p-2")
    schedule(store, a, b)
    cancel(store, b, now=at(hours=1))
    claim(store, at(hours=2))
    store.finish(a, "a", at(hours=2), "suppressed", "consent")

    def keys_statuses(entries: list[Any]) -> list[tuple[str, str]]:
        return [(e.key, e.status) for e in entries]

    assert len(store.audit()) == 4
    assert keys_statuses(store.audit(flow="flow-a")) == [
        ("m-a", "scheduled"),
        ("m-a", "suppressed"),
    ]
    assert keys_statuses(store.audit(since=at(hours=1))) == [
        ("m-b", "cancelled"),
        ("m-a", "suppressed"),
    ]
    assert keys_statuses(store.audit(status="scheduled")) == [
        ("m-a", "scheduled"),
        ("m-b", "scheduled"),
    ]
    assert keys_statuses(store.audit(patient_id="p-2")) == [
        ("m-b", "scheduled"),
        ("m-b", "cancelled"),
    ]
    assert keys_statuses(store.audit(flow="flow-b", status="cancelled")) == [("m-b", "cancelled")]
    assert keys_statuses(store.audit(limit=1)) == [("m-a", "scheduled")]
    assert store.audit(patient_id="p-9") == []


# -- flow versions, consent, errors -------------------------------------------------------


def test_recorded_flow_versions_come_back_with_their_digest(store: SqlStore) -> None:
    store.record_flow_version("test-flow", 1, '{"id": "test-flow"}', T0)

    ((key, (digest, source)),) = store.flow_versions().items()
    assert key == ("test-flow", 1)
    assert source == '{"id": "test-flow"}'
    assert len(digest) == 64


def test_driver_errors_come_out_as_store_errors(store: SqlStore) -> None:
    store.record_flow_version("test-flow", 1, "{}", T0)

    with pytest.raises(StoreError) as raised:
        store.record_flow_version("test-flow", 1, "{}", T0)
    assert raised.value.__cause__ is not None


def test_latest_consent_per_channel_is_kept(store: SqlStore) -> None:
    opted_out = ConsentRecord(Channel.SMS, False, at(hours=1), "sms")
    with store.unit(T0) as unit:
        unit.save_consent("p-1", "patient", ConsentRecord(Channel.SMS, True, T0, "ehr"))
        unit.save_consent("p-1", "patient", opted_out)
        unit.save_consent("p-1", "patient", ConsentRecord(Channel.SMS, True, T0, "ehr"))

    assert store_reads.consent(store, "p-1", "patient") == {Channel.SMS: opted_out}
    assert store_reads.consent(store, "p-1", "caregiver:c-1") == {}


def test_a_unit_holds_its_patients_against_other_processes_on_postgresql(
    pg_database: str,
) -> None:
    holder = connect(pg_database)
    other = create_engine(pg_database, connect_args={"options": "-c lock_timeout=200"})
    lock = text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 0))")
    try:
        with SqlStore(holder).unit(T0) as unit:
            unit.lock_patients(["p-2", "p-1", "p-2"])
            with other.begin() as c:
                c.execute(lock, {"id": "p-3"})  # someone else's patient: free
            for held in ("p-1", "p-2"):
                with pytest.raises(OperationalError, match="lock timeout"), other.begin() as c:
                    c.execute(lock, {"id": held})
        # The unit's transaction ended: the locks went with it.
        with other.begin() as c:
            c.execute(lock, {"id": "p-1"})
    finally:
        holder.dispose()
        other.dispose()


@pytest.mark.parametrize("status", [MessageStatus.CANCELLED, MessageStatus.SCHEDULED])
def test_finishing_a_held_message_with_a_status_it_cannot_move_to_is_refused(
    store: SqlStore, status: MessageStatus
) -> None:
    m = message()
    schedule(store, m)
    store.claim_due(T0, "a", T0 + LEASE, 10)

    with pytest.raises(ValueError, match="cannot move to"):
        store.finish(m, "a", T0, status, "x")

    assert row(store, "m-1").status == MessageStatus.CLAIMED
