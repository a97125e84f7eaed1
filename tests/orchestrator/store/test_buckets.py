"""Send buckets in the SQL store: takes from many connections at once never share a token."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from orchestrator.event import Channel
from orchestrator.policies.pacing import Ask, Pace
from orchestrator.store import SqlStore, connect
from tests.builders import T0

PACE = Pace(rate=2, burst=1)


def test_a_new_bucket_starts_full_and_keeps_what_was_taken(store: SqlStore) -> None:
    first = store.take_tokens("+15555550100", Channel.SMS, PACE, [Ask(1), Ask(1)], T0)
    assert first == [T0, T0 + timedelta(seconds=0.5)]
    # Another channel of the same sender is its own bucket.
    assert store.take_tokens("+15555550100", Channel.EMAIL, PACE, [Ask(1)], T0) == [T0]
    again = store.take_tokens("+15555550100", Channel.SMS, PACE, [Ask(1)], T0)
    assert again == [T0 + timedelta(seconds=1)]


def test_takes_from_many_connections_at_once_each_get_their_own_instant(store_url: str) -> None:
    engines = [connect(store_url) for _ in range(6)]
    ready: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(len(engines))

    def take(store: SqlStore) -> None:
        start.wait()
        for _ in range(5):
            (at,) = store.take_tokens("MG1", Channel.SMS, PACE, [Ask(1)], T0)
            with lock:
                ready.append(at)

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
    assert late == [None]
    assert store.take_tokens("s", Channel.SMS, PACE, [Ask(1)], T0) == [T0 + timedelta(seconds=0.5)]
