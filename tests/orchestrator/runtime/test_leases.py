"""Leases (issue 13, defect 7): a live dispatcher keeps its batch while it sends slowly.

Dispatcher A claims a batch whose sends take longer, together, than its
lease; dispatcher B, another process (its own engine on the same store),
ticks after A's first lease would have run out. A's heartbeat renews the
lease as it sends, so B finds nothing abandoned and every message goes once.
Time is a virtual clock that the slow connector moves as it sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from connectors.sandbox import SandboxConnector
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.runtime import Connector, Dispatcher, Outgoing, Receipt
from orchestrator.store import SqlStore, check_invariants, connect
from orchestrator.templates import TemplateSet
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import ORG, BuildRuntime, Runtime

START = at(days=8)
LEASE = timedelta(minutes=2)


@dataclass
class SlowConnector:
    """Each send takes `takes` on the virtual clock; the `at_send`-th one first lets `meanwhile` run."""

    inner: Connector
    clock: VirtualClock
    takes: timedelta
    at_send: int
    meanwhile: Callable[[], object]
    sends: int = 0

    def send(self, outgoing: Outgoing) -> Receipt:
        self.sends += 1
        self.clock.advance(self.takes)
        if self.sends == self.at_send:
            self.meanwhile()
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)


@pytest.fixture
def other_store(store_url: str) -> Iterator[SqlStore]:
    """The same store through an engine of its own, as another process has."""
    engine = connect(store_url)
    yield SqlStore(engine)
    engine.dispose()


def other_dispatcher(runtime: Runtime, store: SqlStore, templates: TemplateSet) -> Dispatcher:
    return Dispatcher(
        store=store,
        flows=runtime.flows,
        templates=templates,
        connectors={c: SandboxConnector(store, c, runtime.clock) for c in Channel},
        clock=runtime.clock,
        org=ORG,
        owner="b",
        lease=LEASE,
    )


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_live_dispatchers_batch_is_not_taken_over_while_it_sends_slowly(
    build_runtime: BuildRuntime,
    clock: VirtualClock,
    store: SqlStore,
    other_store: SqlStore,
    templates: TemplateSet,
    concurrency: int,
) -> None:
    taken: list[int] = []
    sandbox = SandboxConnector(store, Channel.SMS, clock)
    # Eight sends of 30 s each: the batch takes twice its two-minute lease.
    slow = SlowConnector(sandbox, clock, timedelta(seconds=30), 6, lambda: taken.append(b.tick()))
    runtime = build_runtime(
        connectors={Channel.SMS: slow}, owner="a", lease=LEASE, concurrency=concurrency
    )
    b = other_dispatcher(runtime, other_store, templates)
    runtime.process(*(make_event(start=START, patient=make_patient(f"p-{n}")) for n in range(8)))
    claimed_at = clock.now()

    assert runtime.dispatcher.tick() == 8

    assert clock.now() - claimed_at >= 2 * LEASE
    assert taken == [0], "the other dispatcher took over messages being sent"
    confirmations = [m for m in store.messages() if m.message == "confirmation"]
    assert {m.status for m in confirmations} == {"sent"}
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in confirmations}
    assert check_invariants(store, due_before=clock.now()).ok


def test_a_batch_whose_claimer_really_died_is_still_taken_over_once_its_lease_runs_out(
    build_runtime: BuildRuntime,
    clock: VirtualClock,
    store: SqlStore,
    other_store: SqlStore,
    templates: TemplateSet,
) -> None:
    runtime = build_runtime(owner="a", lease=LEASE)
    b = other_dispatcher(runtime, other_store, templates)
    runtime.process(*(make_event(start=START, patient=make_patient(f"p-{n}")) for n in range(3)))
    store.claim_due(clock.now(), "a", clock.now() + LEASE, 100)  # a claims, then dies

    clock.advance(LEASE - timedelta(seconds=1))
    assert b.tick() == 0
    clock.advance(timedelta(seconds=2))
    assert b.tick() == 3

    confirmations = [m for m in store.messages() if m.message == "confirmation"]
    assert {m.status for m in confirmations} == {"sent"}
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in confirmations}
