"""Bulk writes: a batch's rows of a table in one statement, and the audit tallied the same.

`store/bulk.py` writes each table of a unit of work with one statement on
PostgreSQL (arrays through `unnest`); migration 0015 tallies the audit once
per statement. What they must keep: the rows and values an executemany
wrote, and the tallies the row trigger kept row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection

from orchestrator.store import SqlStore, connect
from orchestrator.store.bulk import insert_rows, upsert
from orchestrator.store.tables import AuditRow, ConsentRow, StageVisitRow
from tests.builders import T0, audit_row_data

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def sql_store(store_url: str) -> Iterator[SqlStore]:
    engine = connect(store_url)
    yield SqlStore(engine)
    engine.dispose()


def audit(n: int, key: str, status: str, reason: str | None = None, **more: Any) -> dict[str, Any]:
    return audit_row_data(
        key,
        status,
        at=T0 + timedelta(minutes=n),
        event_id=f"e-{n}",
        episode_id=more.get("episode", "ep-1"),
        stage_id=more.get("stage", "booked"),
        message_id=key.split("-")[0],
        channel=more.get("channel"),
        reason=reason,
    )


# A key scheduled twice in one batch (a redelivered decision written again),
# suppressed for one reason then another, sent and sent again, and a second
# message alone.
ROWS = [
    audit(1, "m1-a", "scheduled"),
    audit(2, "m1-a", "scheduled"),
    audit(3, "m1-a", "suppressed", "quiet_hours"),
    audit(4, "m1-a", "suppressed", "cap"),
    audit(5, "m1-a", "sent", channel="sms"),
    audit(6, "m1-a", "sent", channel="sms"),
    audit(7, "m2-b", "expired", "stale", episode="ep-2", stage="done"),
]


def tallies(c: Connection) -> dict[tuple[str, str, str], tuple[int, int]]:
    rows = c.execute(
        text("SELECT message_id, status, reason, records, keys FROM message_tallies")
    ).all()
    return {(m, s, r): (records, keys) for m, s, r, records, keys in rows}


def sent_stages(c: Connection) -> set[tuple[str, str]]:
    return {tuple(r) for r in c.execute(text("SELECT episode_id, stage_id FROM sent_stages"))}


def test_an_audit_written_in_one_statement_is_tallied_as_row_by_row(sql_store: SqlStore) -> None:
    table = AuditRow.__table__
    with sql_store.engine.connect() as c:
        with c.begin() as one_by_one:
            for row in ROWS:
                insert_rows(c, table, [row])
            expected = tallies(c), sent_stages(c)
            one_by_one.rollback()
        with c.begin() as together:
            insert_rows(c, table, ROWS)
            assert (tallies(c), sent_stages(c)) == expected
            together.rollback()
    assert expected[0] == {
        ("m1", "scheduled", ""): (2, 1),
        # The key moved from its first suppression's reason to its last.
        ("m1", "suppressed", "quiet_hours"): (1, 0),
        ("m1", "suppressed", "cap"): (1, 1),
        ("m1", "sent", ""): (2, 1),
        ("m2", "expired", "stale"): (1, 1),
    }
    assert expected[1] == {("ep-1", "booked")}


def test_an_audit_row_of_a_later_batch_counts_no_key_twice(sql_store: SqlStore) -> None:
    with sql_store.engine.begin() as c:
        insert_rows(c, AuditRow.__table__, ROWS[:3])
        insert_rows(c, AuditRow.__table__, ROWS[3:])
        assert tallies(c)[("m1", "scheduled", "")] == (2, 1)
        assert tallies(c)[("m1", "suppressed", "quiet_hours")] == (1, 0)
        assert tallies(c)[("m1", "suppressed", "cap")] == (1, 1)


def test_bulk_rows_read_back_as_written(sql_store: SqlStore) -> None:
    # Every kind of column: text, integers, booleans, a float, times, NULLs;
    # and a reason cut to its column's length as an ordinary insert cuts it.
    visits = [
        {
            "episode_id": f"ep-{n}",
            "visit": n,
            "patient_id": "p-1",
            "flow_id": "f",
            "flow_version": 3,
            "stage_id": 'st "quoted", {braces}\\',
            "entered_at": T0 + timedelta(hours=n),
            "event_id": "e-1",
            "persona": None if n else "p",
            "started_at": T0,
            "ending": "moved_on",
            "next_stage_id": None,
            "missed": bool(n),
            "attended": False,
            "intake_sent": True,
            "replied": False,
            "referral_hours": 1.5 if n else None,
            "episode_intake_done": False,
            "episode_no_show": False,
            "episode_replied": True,
        }
        for n in range(3)
    ]
    consent = {
        "patient_id": "p-1",
        "recipient": "p-1",
        "channel": "sms",
        "granted": True,
        "at": T0,
        "source": "api",
    }
    with sql_store.engine.begin() as c:
        insert_rows(c, StageVisitRow.__table__, visits)
        upsert(c, ConsentRow.__table__, [consent], ["patient_id", "recipient", "channel"])
        upsert(
            c,
            ConsentRow.__table__,
            [consent | {"granted": False, "at": T0 + timedelta(days=1)}],
            ["patient_id", "recipient", "channel"],
        )
        insert_rows(c, AuditRow.__table__, [audit(1, "m1-a", "expired", "why " * 100)])
        read = [dict(r._mapping) for r in c.execute(select(StageVisitRow).order_by("visit"))]
        (kept,) = c.execute(select(ConsentRow)).all()
        reason = c.execute(select(AuditRow.reason)).scalar_one()
    assert [
        {k: v.astimezone(T0.tzinfo) if hasattr(v, "astimezone") else v for k, v in r.items()}
        for r in read
    ] == visits
    assert reason == ("why " * 50)[:200]
    assert kept.granted is False
    assert kept.at == T0 + timedelta(days=1)


@pytest.mark.backends("postgresql")
def test_a_batch_of_events_inserts_into_each_table_in_one_statement(sql_store: SqlStore) -> None:
    from orchestrator.clock import VirtualClock
    from orchestrator.runtime import EventProcessor, FlowRegistry
    from tests.builders import make_event, make_flow, make_patient

    seen: list[tuple[str, bool]] = []

    def executed(*args: Any) -> None:
        statement, executemany = args[2], args[5]
        if statement.lstrip().upper().startswith("INSERT"):
            seen.append((statement.split()[2], executemany))

    events = [
        make_event(
            id=f"e-{n}",
            type="appointment.booked",
            patient=make_patient(f"p-{n % 7}"),
            start=T0 + timedelta(days=3, hours=n),
            appointment_id=f"a-{n}",
        )
        for n in range(40)
    ]
    flow = make_flow()
    processor = EventProcessor(sql_store, FlowRegistry.of({flow.id: flow}), VirtualClock(T0))
    event.listen(sql_store.engine, "before_cursor_execute", executed)
    try:
        results = processor.process(events)
    finally:
        event.remove(sql_store.engine, "before_cursor_execute", executed)
    assert {r.status for r in results} == {"accepted"}
    tables = [table for table, _ in seen]
    assert not [t for t, many in seen if many], "an executemany is a statement per row"
    for table in ("processed_events", "journeys", "episodes", "scheduled_messages", "audit_log"):
        assert tables.count(table) == 1, seen


def test_of_two_upserted_rows_with_one_key_the_later_wins(sql_store: SqlStore) -> None:
    first = {"patient_id": "p-1", "recipient": "p-1", "channel": "sms", "granted": True}
    rows = [first | {"at": T0, "source": "a"}, first | {"at": T0, "source": "b"}]
    with sql_store.engine.begin() as c:
        upsert(c, ConsentRow.__table__, rows, ["patient_id", "recipient", "channel"])
        assert c.execute(select(ConsentRow.source)).scalars().all() == ["b"]


def written_rows(store: SqlStore, run: Any) -> dict[str, int]:
    """How many rows each table's INSERT statements carried while `run()` ran."""
    counts: dict[str, int] = {}

    def executed(*args: Any) -> None:
        statement, parameters, executemany = args[2], args[3], args[5]
        if not statement.lstrip().upper().startswith("INSERT"):
            return
        table = statement.split()[2].strip('"')
        if executemany:
            rows = len(parameters)
        elif isinstance(parameters, dict) and isinstance(parameters.get("c0"), list):
            rows = len(parameters["c0"])  # one array per column (`bulk`)
        else:
            rows = 1
        counts[table] = counts.get(table, 0) + rows

    event.listen(store.engine, "before_cursor_execute", executed)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", executed)
    return counts


def test_a_journey_is_written_only_where_it_changed(sql_store: SqlStore) -> None:
    from orchestrator.clock import VirtualClock
    from orchestrator.runtime import EventProcessor, FlowRegistry
    from tests.builders import make_event, make_flow

    flow = make_flow()
    processor = EventProcessor(sql_store, FlowRegistry.of({flow.id: flow}), VirtualClock(T0))
    start = T0 + timedelta(days=10)
    booked = [
        make_event(id=f"b-{n}", appointment_id=f"a-{n}", start=start + timedelta(days=n))
        for n in (1, 2)
    ]
    processor.process(booked)
    with sql_store.unit(T0) as unit:
        journeys = unit.journeys(["p-1"])
    ((key, journey),) = journeys.items()
    assert len(journey.episodes) == 2

    def save_unchanged() -> None:
        with sql_store.unit(T0) as unit:
            unit.save_journey(unit.journeys(["p-1"])[key], key[2])

    assert written_rows(sql_store, save_unchanged) == {}
    # One episode of two moves on (its appointment cancelled): only it is written again.
    cancelled = make_event("appointment.cancelled", id="c-2", appointment_id="a-2", start=start)
    written = written_rows(sql_store, lambda: processor.process([cancelled]))
    assert written["journeys"] == 1
    assert written["episodes"] == 1
    with sql_store.unit(T0) as unit:
        episodes = {e.appointment_id: e.stage_id for e in unit.journeys(["p-1"])[key].episodes}
    assert episodes == {"a-1": "booked", "a-2": "rebooking"}


def test_a_batch_reads_its_patients_consents_in_one_statement(sql_store: SqlStore) -> None:
    from orchestrator.clock import VirtualClock
    from orchestrator.runtime import EventProcessor, FlowRegistry
    from tests.builders import make_event, make_flow, make_patient

    flow = make_flow()
    processor = EventProcessor(sql_store, FlowRegistry.of({flow.id: flow}), VirtualClock(T0))

    def opt(kind: str, n: int, minutes: int) -> Any:
        return make_event(
            f"consent.{kind}",
            id=f"{kind}-{n}-{minutes}",
            patient=make_patient(f"p-{n}"),
            occurred_at=T0 + timedelta(minutes=minutes),
            appointment_id=None,
            attributes={"channel": "sms"},
        )

    processor.process([opt("opted_out", n, 1) for n in range(5)])
    reads: list[str] = []

    def executed(*args: Any) -> None:
        if "FROM consents" in args[2]:
            reads.append(args[2])

    event.listen(sql_store.engine, "before_cursor_execute", executed)
    try:
        # An older opt-in loses to the stored opt-out; a newer one wins.
        results = processor.process(
            [opt("opted_in", n, 0) for n in range(5)] + [opt("opted_in", 0, 2)]
        )
    finally:
        event.remove(sql_store.engine, "before_cursor_execute", executed)
    assert {r.status for r in results} == {"accepted"}
    assert len(reads) == 1
    with sql_store.engine.connect() as c:
        granted = dict(c.execute(select(ConsentRow.patient_id, ConsentRow.granted)).all())
    assert granted == {"p-0": True, "p-1": False, "p-2": False, "p-3": False, "p-4": False}


@pytest.mark.backends("postgresql")
def test_a_value_too_long_for_its_column_is_refused_not_cut(sql_store: SqlStore) -> None:
    from sqlalchemy.exc import DataError

    with pytest.raises(DataError), sql_store.engine.begin() as c:
        insert_rows(c, AuditRow.__table__, [audit(1, "k" * 41, "scheduled")])


def visit(n: int, **values: Any) -> dict[str, Any]:
    return {
        "episode_id": "ep-1",
        "visit": n,
        "patient_id": "p-1",
        "flow_id": "f",
        "flow_version": 1,
        "stage_id": "booked",
        "entered_at": T0,
        "event_id": f"e-{n}",
        "persona": None,
        "started_at": T0,
        "ending": "moved_on",
        "next_stage_id": None,
        "missed": False,
        "attended": False,
        "intake_sent": False,
        "replied": False,
        "referral_hours": None,
        "episode_intake_done": False,
        "episode_no_show": False,
        "episode_replied": False,
    } | values


def test_a_column_of_mixed_python_types_is_stored_as_its_type(sql_store: SqlStore) -> None:
    # psycopg refuses to send a list that mixes types; an executemany took them.
    rows = [
        visit(0, referral_hours=2, flow_version=True, missed=0),
        visit(1, referral_hours=1.5, flow_version=3, missed=True),
        visit(2, referral_hours=None, flow_version=2, missed=1),
    ]
    with sql_store.engine.begin() as c:
        insert_rows(c, StageVisitRow.__table__, rows)
        read = c.execute(
            select(
                StageVisitRow.referral_hours, StageVisitRow.flow_version, StageVisitRow.missed
            ).order_by(StageVisitRow.visit)
        ).all()
    assert [tuple(r) for r in read] == [(2.0, 1, False), (1.5, 3, True), (None, 2, True)]
    assert [type(r[0]) for r in read[:2]] == [float, float]


def scheduled(key: str, **values: Any) -> dict[str, Any]:
    row = {
        "key": key,
        "patient_id": "p-1",
        "recipient": "p-1",
        "flow_id": "f",
        "flow_version": 1,
        "episode_id": "ep-1",
        "stage_id": "booked",
        "message_id": "m1",
        "payload": "{}",
        "status": "pending",
        "reason": None,
        "due_at": T0,
        "expires_at": None,
        "created_at": T0,
        "updated_at": T0,
    }
    return row | values


def test_a_column_the_rows_leave_out_takes_its_default(sql_store: SqlStore) -> None:
    from orchestrator.store.tables import ScheduledMessageRow

    table = ScheduledMessageRow.__table__
    with sql_store.engine.begin() as c:
        insert_rows(c, table, [scheduled("m1-a"), scheduled("m1-b")])
        upsert(c, table, [scheduled("m1-c", attempts=3)], ["key"])
        # Replaced without it, a row keeps the value it has, as on conflict it updates
        # only the columns given.
        upsert(c, table, [scheduled("m1-c", status="sent"), scheduled("m1-d")], ["key"])
        read = c.execute(
            select(
                ScheduledMessageRow.key, ScheduledMessageRow.attempts, ScheduledMessageRow.status
            ).order_by(ScheduledMessageRow.key)
        ).all()
    assert [tuple(r) for r in read] == [
        ("m1-a", 0, "pending"),
        ("m1-b", 0, "pending"),
        ("m1-c", 3, "sent"),
        ("m1-d", 0, "pending"),
    ]


def test_a_value_its_type_refuses_raises_as_an_ordinary_insert_does(sql_store: SqlStore) -> None:
    from sqlalchemy.exc import InvalidRequestError, StatementError

    naive = audit(1, "m1-a", "scheduled") | {"at": T0.replace(tzinfo=None)}
    with pytest.raises(StatementError) as raised, sql_store.engine.begin() as c:
        insert_rows(c, AuditRow.__table__, [audit(2, "m1-a", "scheduled"), naive])
    assert isinstance(raised.value.orig, ValueError)
    assert "naive" in str(raised.value)
    # A later row without a column the first row has, and no default for it.
    (missing := audit(2, "m1-a", "scheduled")).pop("template")
    with pytest.raises(StatementError) as raised, sql_store.engine.begin() as c:
        insert_rows(c, AuditRow.__table__, [audit(1, "m1-a", "scheduled"), missing])
    assert isinstance(raised.value.orig, InvalidRequestError)
    assert "'template'" in str(raised.value)


@pytest.mark.backends("postgresql")
def test_the_tally_trigger_takes_its_tally_rows_in_one_order(sql_store: SqlStore) -> None:
    # Two workers' batches that share tally rows lock them in the dimensions'
    # order, not in the order a plan happens to give: the insert's rows sorted,
    # the update's locked sorted before it updates them. (Read from the function
    # as the migration made it: a deadlock between two workers cannot be forced
    # without timing.)
    with sql_store.engine.connect() as c:
        body = " ".join(
            c.execute(text("SELECT prosrc FROM pg_proc WHERE proname = 'tally_audit_rows'"))
            .scalar_one()
            .split()
        )
    dimensions = "flow_id, flow_version, persona, message_id, stage_id, status, reason"
    inserted, updated = body.split("ON CONFLICT")[0], body.split("UPDATE message_tallies t")[0]
    assert f"ORDER BY {dimensions}" in inserted
    assert "ORDER BY t.flow_id, t.flow_version, t.persona" in updated
    assert "FOR UPDATE OF t" in updated
    assert "FROM locked" in body.split("UPDATE message_tallies t")[1]
