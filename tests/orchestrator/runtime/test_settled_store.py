"""Settled episodes through the processor and the store (each backend)."""

from __future__ import annotations

from orchestrator.insight.reading import measured
from tests.builders import make_flow
from tests.orchestrator.history import sessions
from tests.orchestrator.runtime.conftest import BuildRuntime

FLOW = make_flow()


def test_a_long_history_stores_a_small_journey_and_keeps_every_episode(
    build_runtime: BuildRuntime,
) -> None:
    runtime = build_runtime({FLOW.id: FLOW})
    for event in sessions(30):
        runtime.at(event.occurred_at, event)

    journey = runtime.store.journey("p-1", FLOW.id, FLOW.version)
    assert journey is not None
    assert journey.settled == ()  # archived in the episode rows, not the journey row
    assert len(journey.episodes) <= 5 and len(journey.events) <= 15
    # The timeline, the figures and the patient's journeys still see all 30.
    assert len(runtime.store.episodes("p-1")) == 30
    [(_, read)] = runtime.store.patient_journeys("p-1")
    assert len(read.all_episodes()) == 30
    figures = measured(runtime.store, FLOW)
    assert figures.episodes == 30
    assert figures.stage("visited").completed == 30
