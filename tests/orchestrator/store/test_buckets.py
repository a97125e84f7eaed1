"""Send buckets in the SQL store: takes from many connections at once never share a token."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta

import pytest

from orchestrator.event import Channel
from orchestrator.policies.pacing import Ask, Pace, Taken
from orchestrator.ports import Outgoing
from orchestrator.runtime.pacing import Pacer, PacingPlan, Sender
from orchestrator.store import SqlStore, connect
from tests.builders import T0

PACE = Pace(rate=2, burst=1)


def when(answers: list[Taken], now: datetime = T0) -> list[datetime | None]:
    """When each send may go: `now` when its tokens were taken."""
    return [now if a.taken else a.ready_at for a in answers]


def test_a_new_bucket_starts_full_and_keeps_what_was_taken(store: SqlStore) -> None:
    first = store.take_tokens("+15555550100", Channel.SMS, PACE, [Ask(1), Ask(1)], T0)
    assert [a.taken for a in first] == [True, False]
    assert when(first) == [T0, T0 + timedelta(seconds=0.5)]
    # Another channel of the same sender is its own bucket.
    assert store.take_tokens("+15555550100", Channel.EMAIL, PACE, [Ask(1)], T0) == [Taken(True, T0)]
    again = store.take_tokens("+15555550100", Channel.SMS, PACE, [Ask(1)], T0)
    assert again == [Taken(False, T0 + timedelta(seconds=1))]


def test_takes_from_many_connections_at_once_each_get_their_own_instant(store_url: str) -> None:
    engines = [connect(store_url) for _ in range(6)]
    ready: list[datetime | None] = []
    lock = threading.Lock()
    start = threading.Barrier(len(engines))

    def take(store: SqlStore) -> None:
        start.wait()
        for _ in range(5):
            answers = store.take_tokens("MG1", Channel.SMS, PACE, [Ask(1)], T0)
            with lock:
                ready.extend(when(answers))

    threads = [threading.Thread(target=take, args=(SqlStore(e),)) for e in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for engine in engines:
            engine.dispose()
    assert sorted(ready) == [T0 + timedelta(seconds=0.5 * i) for i in range(30)]  # type: ignore[type-var]


@pytest.mark.parametrize("cost", [1.0, 2.0])
def test_a_take_past_its_deadline_leaves_the_bucket_as_it_was(store: SqlStore, cost: float) -> None:
    store.take_tokens("s", Channel.SMS, PACE, [Ask(1)], T0)
    late = store.take_tokens("s", Channel.SMS, PACE, [Ask(cost, T0 + timedelta(seconds=0.1))], T0)
    assert late == [Taken(False, None)]
    assert when(store.take_tokens("s", Channel.SMS, PACE, [Ask(1)], T0)) == [
        T0 + timedelta(seconds=0.5)
    ]


@pytest.mark.backends("postgresql")
def test_two_batches_of_both_channels_in_opposite_orders_do_not_deadlock(store_url: str) -> None:
    # Each batch holds its buckets' row locks until it commits. Were they locked
    # in the order the batch names its channels, A (SMS, email) and B (email, SMS)
    # would each hold one and wait for the other: PostgreSQL then kills one.
    plan = PacingPlan(
        {
            Channel.SMS: Sender("MG1", Pace(100, 100)),
            Channel.EMAIL: Sender("care@example.org", Pace(100, 100)),
        }
    )
    sms = Outgoing("k-sms", Channel.SMS, "+15555550100", "hi")
    email = Outgoing("k-email", Channel.EMAIL, "p1@example.org", "hi")
    engines = [connect(store_url) for _ in range(3)]
    Pacer(SqlStore(engines[0]), plan).admit([sms, email], T0)  # both rows exist
    # Both batches hold their first bucket before either asks for its second
    # (the second to come waits at most a second, and no longer when it is blocked).
    both_hold_one = threading.Barrier(2, timeout=1)
    outcome: dict[str, str] = {}

    def batch(label: str, engine_index: int, sends: list[Outgoing]) -> None:
        store = SqlStore(engines[engine_index])
        take = store.buckets.take_tokens
        takes = 0

        def take_then_wait(*args: object, **kwargs: object) -> list[Taken]:
            nonlocal takes
            answers = take(*args, **kwargs)  # type: ignore[arg-type]
            takes += 1
            if takes == 1:
                # Broken: the other batch waits on this one's lock, as it should.
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_hold_one.wait()
            return answers

        store.buckets.take_tokens = take_then_wait  # type: ignore[method-assign]
        try:
            with store.together():
                Pacer(store, plan).admit(sends, T0)
            outcome[label] = "ok"
        except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
            outcome[label] = repr(exc)

    threads = [
        threading.Thread(target=batch, args=("A", 1, [sms, email])),
        threading.Thread(target=batch, args=("B", 2, [email, sms])),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for engine in engines:
            engine.dispose()
    assert outcome == {"A": "ok", "B": "ok"}
