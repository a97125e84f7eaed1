"""Bounded journeys: ended episodes settle out of the live journey (engine rule 3)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.actions import CancelMessage
from orchestrator.engine import SETTLE_AFTER, advance
from orchestrator.event import Event
from orchestrator.insight import flow_figures
from orchestrator.journey import EpisodeStatus, Journey
from tests.builders import make_event, make_flow
from tests.orchestrator.history import sessions

FLOW = make_flow()


def fold(events: list[Event]) -> tuple[Journey, list[CancelMessage]]:
    journey = Journey.start("p-1", FLOW.id)
    cancels: list[CancelMessage] = []
    for event in events:
        decision = advance(journey, event, FLOW, event.occurred_at)
        journey = decision.journey
        cancels += [a for a in decision.actions if isinstance(a, CancelMessage)]
    return journey, cancels


def test_a_long_history_keeps_only_its_last_week_live() -> None:
    journey, _ = fold(sessions(60))

    assert len(journey.all_episodes()) == 60
    assert len(journey.episodes) <= 5
    assert len(journey.events) <= 15
    assert {m.episode_id for m in journey.messages.values()} <= {e.id for e in journey.episodes}
    assert journey.horizon is not None
    # The horizon moves when an episode settles: a session or two behind the week.
    assert journey.horizon >= journey.events[-1].occurred_at - SETTLE_AFTER - timedelta(days=3)


def test_settling_an_episode_cancels_nothing() -> None:
    _, cancels = fold(sessions(30))

    # A check-in cancels the reminders it makes pointless; settling cancels nothing more.
    assert {c.reason for c in cancels} <= {"appointment_checked_in"}


def test_an_event_older_than_the_horizon_changes_nothing() -> None:
    journey, _ = fold(sessions(30))
    assert journey.horizon is not None
    late = make_event(
        "appointment.booked",
        id="late-booking",
        occurred_at=journey.horizon - timedelta(hours=1),
        appointment_id="a-late",
        start=journey.horizon + timedelta(days=1),
    )

    decision = advance(journey, late, FLOW, journey.events[-1].occurred_at)

    assert decision.actions == ()
    assert decision.journey is journey


def test_an_event_about_a_settled_appointment_does_not_reopen_its_episode() -> None:
    journey, _ = fold(sessions(30))
    settled = journey.settled[0]
    assert settled.status is EpisodeStatus.COMPLETED
    cancelled = make_event(
        "appointment.cancelled",
        id="cancel-old",
        occurred_at=journey.events[-1].occurred_at,
        appointment_id=settled.appointment_id,
    )

    decision = advance(journey, cancelled, FLOW, cancelled.occurred_at)

    assert decision.actions == ()
    assert decision.journey.settled == journey.settled
    assert decision.journey.episodes == journey.episodes


def test_the_figures_count_settled_episodes_as_they_counted_live_ones() -> None:
    journey, _ = fold(sessions(40))
    # The same history, with every episode still live (as before journeys settled).
    everything = Journey(patient_id="p-1", flow_id=FLOW.id, episodes=journey.all_episodes())

    compacted = flow_figures(FLOW, [journey], [])
    assert compacted == flow_figures(FLOW, [everything], [])
    assert compacted.episodes == 40
    assert compacted.stage("booked").moved_on == 40
    assert compacted.stage("visited").completed == 40


@st.composite
def nearby_shuffles(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """A long history, and the same events arriving a little out of order: each
    group of up to four consecutive events (a few days) in any order, some twice."""
    stream = sessions(draw(st.integers(min_value=6, max_value=10)))
    arrived: list[Event] = []
    for i in range(0, len(stream), 4):
        group = draw(st.permutations(stream[i : i + 4]))
        arrived += group
        if draw(st.booleans()):
            arrived.append(draw(st.sampled_from(group)))
    return stream, arrived


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=nearby_shuffles())
def test_events_a_few_days_late_give_the_same_journey_as_events_in_order(
    streams: tuple[list[Event], list[Event]],
) -> None:
    in_order, arrived = streams

    expected, _ = fold(in_order)
    journey, _ = fold(arrived)

    assert journey.episodes == expected.episodes
    assert journey.messages == expected.messages
    assert sorted(e.id for e in journey.settled) == sorted(e.id for e in expected.settled)
