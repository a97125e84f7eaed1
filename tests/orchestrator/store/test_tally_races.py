"""The audit's tallies under concurrent writers, and across the tally migrations' downgrades.

`message_tallies` (migrations 0011, 0015, 0016) must always equal what a
recount of the committed audit gives: `records` the rows per tally, `keys`
each (key, status) once, under its first row in id order (a suppression
under its last). These tests write the audit from several connections with
an explicit interleaving of their statements and commits: each connection
runs in its own thread, and the test goes on to the next step only once
every connection has finished its step or waits on a lock (`pg_locks`), so
an interleaving plays out the same way every time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

import orchestrator.store.migrate
from orchestrator.store import connect, upgrade
from orchestrator.store.bulk import insert_rows
from orchestrator.store.tables import AuditRow
from tests.builders import T0, audit_row_data
from tests.conftest import PG_ADMIN_URL

_DIMENSIONS = (
    "flow_id, flow_version, persona, message_id, stage_id, status, reason, language, channel, day"
)

# The tallies from scratch: every committed audit row counted once in
# `records`; in `keys`, the first row of each (key, status) by id, or for a
# suppression the last.
_RECOUNT = text(f"""
WITH rows AS (
  SELECT a.id, a.key, a.flow_id, a.flow_version, coalesce(v.persona, '') AS persona,
    a.message_id, a.stage_id, a.status, coalesce(a.reason, '') AS reason,
    coalesce(a.language, '') AS language, coalesce(a.channel, '') AS channel,
    to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
    row_number() OVER (PARTITION BY a.key, a.status
      ORDER BY CASE WHEN a.status = 'suppressed' THEN -a.id ELSE a.id END) AS nth
  FROM audit_log a LEFT JOIN stage_visits v ON v.episode_id = a.episode_id AND v.visit = 0
)
SELECT {_DIMENSIONS}, count(*), count(*) FILTER (WHERE nth = 1) FROM rows
GROUP BY {_DIMENSIONS}
""")
_TALLIES = text(f"SELECT {_DIMENSIONS}, records, keys FROM message_tallies")

Tallies = dict[tuple[Any, ...], tuple[int, int]]


def recount(c: Connection) -> Tallies:
    return {tuple(r[:-2]): (int(r[-2]), int(r[-1])) for r in c.execute(_RECOUNT)}


def tallies(c: Connection) -> Tallies:
    # A tally row whose rows and keys are all gone (none is) would equal no row.
    found = {tuple(r[:-2]): (int(r[-2]), int(r[-1])) for r in c.execute(_TALLIES)}
    return {dims: n for dims, n in found.items() if n != (0, 0)}


def row(key: str, status: str, reason: str | None = None, *, day: int = 0, **more: Any) -> Any:
    """An audit row of message `m` (or `message`; one episode): `day` days after T0."""
    return audit_row_data(
        key,
        status,
        at=T0 + timedelta(days=day, minutes=len(reason or "")),
        message_id=more.get("message", "m"),
        channel=more.get("channel"),
        reason=reason,
    )


# -- driving several connections step by step -----------------------------------


@dataclass
class Writer:
    """One connection and the thread that runs its statements, one after another."""

    connection: Connection
    pid: int
    thread: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    pending: list[Future[None]] = field(default_factory=list)
    failed: bool = False

    def submit(self, step: Callable[[Connection], None]) -> None:
        self.pending.append(self.thread.submit(self._run, step))

    def _run(self, step: Callable[[Connection], None]) -> None:
        if self.failed:
            return  # the transaction is gone (a deadlock): its later steps with it
        try:
            step(self.connection)
        except DBAPIError as exc:
            # PostgreSQL broke a deadlock by ending this transaction: what it
            # wrote is gone, and the tallies must say so.
            assert "deadlock" in str(exc), exc
            self.connection.rollback()
            self.failed = True

    def idle(self) -> bool:
        return all(f.done() for f in self.pending)


@dataclass
class Writers:
    monitor: Connection
    writers: list[Writer]

    def step(self, n: int, step: Callable[[Connection], None]) -> None:
        """Run `step` on writer `n`, then wait until every writer is done or waits on a lock."""
        self.writers[n].submit(step)
        self.settle()

    def settle(self) -> None:
        # A poll of where the writers are, not a wait for an outcome; bounded,
        # so a writer stuck elsewhere fails the test instead of hanging it.
        give_up = time.monotonic() + 30
        while not all(w.idle() or self._waiting(w) for w in self.writers):
            assert time.monotonic() < give_up, "a writer neither finished nor waits on a lock"
            time.sleep(0.001)
        for w in self.writers:
            for f in [f for f in w.pending if f.done()]:
                f.result()  # an assertion in a step fails the test here
                w.pending.remove(f)

    def _waiting(self, w: Writer) -> bool:
        return bool(
            self.monitor.execute(
                text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = :pid AND NOT granted)"),
                {"pid": w.pid},
            ).scalar_one()
        )

    def finish(self) -> None:
        for w in self.writers:
            for f in w.pending:
                f.result(timeout=30)
            w.pending.clear()
            w.failed = False


def insert(rows: Sequence[dict[str, Any]]) -> Callable[[Connection], None]:
    def step(c: Connection) -> None:
        insert_rows(c, AuditRow.__table__, list(rows))

    return step


def commit(c: Connection) -> None:
    c.commit()


def rollback(c: Connection) -> None:
    c.rollback()


@pytest.fixture
def writers(pg_database: str) -> Iterator[Writers]:
    engine = connect(pg_database)
    monitor = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    found = []
    for _ in range(3):
        c = engine.connect()
        pid = int(c.execute(text("SELECT pg_backend_pid()")).scalar_one())
        # A deadlock (two statements each, locks taken in opposite orders) is
        # broken in milliseconds rather than a second.
        c.execute(text("SET deadlock_timeout = '10ms'"))
        c.commit()
        found.append(Writer(c, pid))
    _empty(monitor)
    try:
        yield Writers(monitor, found)
    finally:
        for w in found:
            w.thread.shutdown(wait=True)
            w.connection.close()
        _empty(monitor)
        monitor.close()
        engine.dispose()


def _empty(c: Connection) -> None:
    c.execute(text("TRUNCATE audit_log, message_tallies, sent_stages RESTART IDENTITY"))


def check(w: Writers) -> None:
    assert tallies(w.monitor) == recount(w.monitor)


# -- explicit interleavings ---------------------------------------------------------

# Two writers reach one status of one key under different tallies (another
# reason, another day, another channel): no tally row is shared, so neither
# waits for the other.
APART = [
    pytest.param(row("k", "delivered", "a"), row("k", "delivered", "b"), id="reason"),
    pytest.param(row("k", "failed"), row("k", "failed", day=1), id="day"),
    pytest.param(row("k", "sent"), row("k", "sent", channel="sms"), id="channel"),
    pytest.param(row("k", "suppressed", "a"), row("k", "suppressed", "b"), id="suppressed"),
]


@pytest.mark.parametrize(("first", "second"), APART)
@pytest.mark.parametrize("later_commits_first", [False, True])
def test_a_key_reached_by_two_open_transactions_counts_once(
    writers: Writers, first: Any, second: Any, later_commits_first: bool
) -> None:
    # tx0 inserts (the lower id), tx1 inserts, then they commit in either order.
    writers.step(0, insert([first]))
    writers.step(1, insert([second]))
    for n in (1, 0) if later_commits_first else (0, 1):
        writers.step(n, commit)
    writers.finish()
    check(writers)
    keys = sum(n for _, n in tallies(writers.monitor).values())
    assert keys == 1


@pytest.mark.parametrize("later_commits_first", [False, True])
def test_a_key_reached_in_one_tally_by_two_transactions_counts_once(
    writers: Writers, later_commits_first: bool
) -> None:
    # One tally row: the second writer waits for the first's lock on it.
    writers.step(0, insert([row("k", "delivered")]))
    writers.step(1, insert([row("k", "delivered")]))
    for n in (1, 0) if later_commits_first else (0, 1):
        writers.step(n, commit)
    writers.finish()
    check(writers)


def test_a_key_reached_by_a_transaction_that_rolls_back_counts_in_the_other(
    writers: Writers,
) -> None:
    writers.step(0, insert([row("k", "delivered", "a")]))
    writers.step(1, insert([row("k", "delivered", "b")]))
    writers.step(0, rollback)
    writers.step(1, commit)
    writers.finish()
    check(writers)


def test_statements_with_repeated_keys_from_three_writers_are_counted_as_a_recount(
    writers: Writers,
) -> None:
    # Each statement repeats a key and a status, and suppresses a key twice.
    writers.step(0, insert([row("k", "sent"), row("k", "sent"), row("j", "suppressed", "a")]))
    writers.step(1, insert([row("j", "suppressed", "b"), row("k", "sent", day=1)]))
    writers.step(2, insert([row("j", "suppressed", "a"), row("j", "suppressed", "c")]))
    writers.step(2, commit)
    writers.step(1, insert([row("k", "delivered"), row("j", "sent")]))
    writers.step(0, insert([row("j", "sent", channel="sms"), row("k", "delivered", "x")]))
    writers.step(1, commit)
    writers.step(0, commit)
    writers.finish()
    check(writers)


def test_a_row_with_a_lower_id_committed_after_a_higher_one_takes_the_key_to_its_tally(
    writers: Writers,
) -> None:
    # The trigger locks a statement's (flow, message, status) in the order of
    # their hashes: `first` before `second`.
    first, second = (
        status
        for _, status in sorted(
            (writers.monitor.execute(text(_HASH), {"s": s}).scalar_one(), s)
            for s in ("scheduled", "delivered")
        )
    )
    writers.step(1, insert([row("j", first)]))
    # tx0's statement takes its ids (k's the lower), then waits for tx1's lock on `first`...
    writers.step(0, insert([row("k", second, "a"), row("j", first)]))
    # ... while tx1 counts k under reason b, and commits.
    writers.step(1, insert([row("k", second, "b")]))
    writers.step(1, commit)
    writers.step(0, commit)
    writers.finish()
    check(writers)


_HASH = "SELECT hashtext('f' || chr(31) || 'm' || chr(31) || :s)"


# -- generated interleavings ----------------------------------------------------

# Keys of two messages (a key is one message's), so a statement may take
# two messages' locks, in an order of their own.
_ROWS = st.sampled_from([("k", "m"), ("j", "m"), ("i", "n")]).flatmap(
    lambda key: st.builds(
        row,
        key=st.just(key[0]),
        status=st.sampled_from(["scheduled", "delivered", "suppressed"]),
        reason=st.sampled_from([None, "a", "b"]),
        day=st.sampled_from([0, 1]),
        message=st.just(key[1]),
    )
)
# Per transaction: its statements (each a few rows), and whether it commits.
_TRANSACTION = st.tuples(
    st.lists(st.lists(_ROWS, min_size=1, max_size=3), min_size=1, max_size=2),
    st.sampled_from([commit, commit, commit, rollback]),
)


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[int, Callable[[Connection], None]]]:
    """Two or three transactions' steps, merged in an order drawn."""
    transactions = draw(st.lists(_TRANSACTION, min_size=2, max_size=3))
    steps = [
        [insert(statement) for statement in statements] + [end] for statements, end in transactions
    ]
    turns = draw(st.permutations([n for n, s in enumerate(steps) for _ in s]))
    return [(n, steps[n].pop(0)) for n in turns]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=interleavings())
def test_any_interleaving_of_writers_leaves_the_tallies_of_a_recount(
    writers: Writers, plan: list[tuple[int, Callable[[Connection], None]]]
) -> None:
    _empty(writers.monitor)
    for n, step in plan:
        writers.step(n, step)
    writers.finish()
    check(writers)


# -- downgrades -----------------------------------------------------------------


@pytest.fixture
def own_database() -> Iterator[Engine]:
    """A database of this test's own, migrated to the head: its schema is taken down and up."""
    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = connect(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _downgrade(engine: Engine, revision: str) -> None:
    config = Config()
    scripts = Path(orchestrator.store.migrate.__file__).resolve().parent / "migrations"
    config.set_main_option("script_location", str(scripts))
    with engine.begin() as c:
        config.attributes["connection"] = c
        command.downgrade(config, revision)


def _write(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    with engine.begin() as c:
        insert_rows(c, AuditRow.__table__, list(rows))
        for r in rows:  # and one by one, as the delivery ledger writes
            insert_rows(c, AuditRow.__table__, [r])


def _same(engine: Engine) -> None:
    with engine.connect() as c:
        assert tallies(c) == recount(c)


def batch(new: str, *, repeated: bool) -> list[dict[str, Any]]:
    """Keys `new`... reaching statuses for the first time, beside the old key `k` again.

    `repeated`: a new key reaches one status twice in the statement, which
    0011's row trigger (the schema below 0015) counts zero times: the reason
    for 0015, so rows written under it have no such pair.
    """
    rows = [
        row(f"{new}1", "scheduled"),
        row(f"{new}1", "suppressed", "a"),
        row(f"{new}2", "sent", channel="sms"),
        row("k", "scheduled", day=1),
        row("k", "suppressed", "b"),
        row("k", "suppressed", "a", day=1),
    ]
    if repeated:
        rows += [row(f"{new}1", "scheduled"), row(f"{new}1", "suppressed", "c")]
    return rows


@pytest.mark.parametrize("revision", ["0016", "0015"])
def test_a_tally_migration_taken_down_and_up_keeps_the_tallies_of_a_recount(
    own_database: Engine, revision: str
) -> None:
    below = f"{int(revision) - 1:04d}"
    _write(own_database, [row("k", "scheduled"), *batch("a", repeated=True)])
    _same(own_database)
    _downgrade(own_database, below)
    with own_database.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == below
        # The trigger of the revision below: 0011's row trigger, or 0015's without the lock.
        trigger, body = c.execute(
            text(
                "SELECT t.tgname, p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                " WHERE t.tgrelid = 'audit_log'::regclass AND NOT t.tgisinternal"
            )
        ).one()
        assert trigger == ("tally_audit" if below == "0014" else "tally_audit_rows")
        assert "pg_advisory_xact_lock" not in body
    _write(own_database, batch("b", repeated=below != "0014"))
    _same(own_database)
    upgrade(own_database)
    _write(own_database, batch("c", repeated=True))
    _same(own_database)


def test_the_upgrade_to_0016_recounts_tallies_0015_got_wrong(own_database: Engine) -> None:
    _downgrade(own_database, "0015")
    # Under 0015, two open transactions each count the key: they wait for
    # nothing (two reasons, two tally rows) and neither sees the other's row.
    with own_database.connect() as one, own_database.connect() as two:
        insert_rows(one, AuditRow.__table__, [row("k", "delivered", "a")])
        insert_rows(two, AuditRow.__table__, [row("k", "delivered", "b")])
        two.commit()
        one.commit()
    with own_database.connect() as c:
        assert sum(n for _, n in tallies(c).values()) == 2
    upgrade(own_database)
    _same(own_database)
