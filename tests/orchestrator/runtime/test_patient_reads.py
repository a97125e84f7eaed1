"""The per-patient reads a timeline is built from: journeys, events with their source, and
the sandbox's bodies by message key (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from orchestrator.memory_store import MemoryStore
from tests.builders import at
from tests.orchestrator.insight.stream import insight_flow, insight_stream
from tests.orchestrator.runtime.conftest import BuildRuntime

FLOW = insight_flow()


def test_a_patients_reads_hold_only_theirs_in_time_order(build_runtime: BuildRuntime) -> None:
    runtime = build_runtime({FLOW.id: FLOW})
    store = runtime.store
    if isinstance(store, MemoryStore):
        pytest.skip("read models of the SQL store")
    stream = insight_stream()
    # Fed out of order: the read gives them back in the order they occurred.
    for event in sorted(stream, key=lambda e: e.id, reverse=True):
        runtime.at(max(event.occurred_at, runtime.clock.now()), event)
    runtime.run_until(at(days=60))
    patient_id = stream[0].patient.id

    events = store.patient_events(patient_id)
    journeys = store.patient_journeys(patient_id)

    theirs = sorted((e.occurred_at, e.id) for e in stream if e.patient.id == patient_id)
    assert [(e.occurred_at, e.event_id) for e in events] == theirs
    assert {e.source for e in events} and all(e.received_at for e in events)
    assert [e.event_id for e in store.patient_events(patient_id, limit=1)] == [theirs[-1][1]]
    expected = [(v, j) for v, j in store.flow_journeys(FLOW.id) if j.patient_id == patient_id]
    assert journeys == expected and journeys
    keys = [m.key for m in store.messages(patient_id=patient_id) if m.sent_at is not None]
    bodies = store.outbox_for([*keys, "no-such-key"])
    assert set(bodies) == set(keys) and keys
    assert all(bodies[k].body for k in keys)
