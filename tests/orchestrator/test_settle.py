"""Bounded journeys: the checkpoint follows the horizon, episodes long over settle out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.actions import Action, CancelMessage, ScheduleMessage
from orchestrator.engine import advance
from orchestrator.event import Event
from orchestrator.journey import Episode, EpisodeStatus, Journey
from orchestrator.settle import DEFAULT_SETTLE_AFTER, settle
from tests.builders import make_event, make_flow
from tests.orchestrator.history import sessions

FLOW = make_flow()
AFTER = DEFAULT_SETTLE_AFTER


@dataclass
class Feed:
    """A live feed: each event processed when it arrives, the clock at the latest seen."""

    bounded: bool = True
    journey: Journey = field(default_factory=lambda: Journey.start("p-1", FLOW.id))
    settled: list[Episode] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    now: datetime | None = None

    def take(self, *events: Event, now: datetime | None = None) -> list[Action]:
        taken: list[Action] = []
        for event in events:
            if now is not None:
                self.now = now
            elif self.now is None or event.occurred_at > self.now:
                self.now = event.occurred_at
            decision = advance(self.journey, event, FLOW, self.now)
            taken += decision.actions
            self.journey = decision.journey
            if self.bounded:
                result = settle(self.journey, FLOW, self.now, AFTER)
                self.journey = result.journey
                self.settled += result.episodes
        self.actions += taken
        return taken

    def whole(self) -> dict[str, Episode]:
        return {e.id: e for e in self.journey.with_settled(self.settled).episodes}


def live_messages(*feeds: Feed) -> list[dict[str, object]]:
    """Each feed's messages, but for those of episodes settled in any of them.

    When an episode settles depends on when the checkpoint moves, which a late
    event can bring forward; what is still wanted does not.
    """
    gone = {e.id for f in feeds for e in f.settled}
    return [
        {k: m for k, m in f.journey.messages.items() if m.episode_id not in gone} for f in feeds
    ]


def decisions(actions: list[Action]) -> list[tuple[str, str]]:
    return [(type(a).__name__, getattr(a, "message", a).__class__.__name__) for a in actions]


def keys(actions: list[Action]) -> list[tuple[str, str, str]]:
    return [
        (type(a).__name__, a.message.key, getattr(a, "reason", ""))
        for a in actions
        if hasattr(a, "message")
    ]


def test_a_long_history_keeps_a_journey_of_a_month_or_two() -> None:
    stream = sessions(200)
    bounded, unbounded = Feed(), Feed(bounded=False)
    bounded.take(*stream)
    unbounded.take(*stream)

    assert len(unbounded.journey.events) == len(stream) > 600
    assert len(bounded.journey.events) < 120
    assert len(bounded.journey.episodes) < 40
    assert len(bounded.settled) > 180
    # Nothing live refers to a settled episode.
    gone = {e.id for e in bounded.settled}
    assert not gone & {m.episode_id for m in bounded.journey.messages.values()}
    assert bounded.journey.checkpoint is not None
    assert not gone & {e.id for e in bounded.journey.checkpoint.episodes}


def test_settling_changes_no_decision_and_loses_no_episode() -> None:
    stream = sessions(80)
    bounded, unbounded = Feed(), Feed(bounded=False)
    bounded.take(*stream)
    unbounded.take(*stream)

    assert keys(bounded.actions) == keys(unbounded.actions)
    assert bounded.whole() == {e.id: e for e in unbounded.journey.episodes}
    assert bounded.journey.messages == {
        k: m
        for k, m in unbounded.journey.messages.items()
        if m.episode_id in {e.id for e in bounded.journey.episodes}
    }


@st.composite
def nearby_shuffles(draw: st.DrawFn) -> tuple[int, list[int]]:
    """How many sessions, and the order their events arrive in: each group of up
    to five consecutive events (a few days) in any order."""
    count = draw(st.integers(min_value=20, max_value=40))
    total = len(sessions(count))
    order: list[int] = []
    for i in range(0, total, 5):
        order += draw(st.permutations(range(i, min(i + 5, total))))
    return count, order


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffle=nearby_shuffles())
def test_events_a_few_days_late_end_as_if_they_had_come_in_order(
    shuffle: tuple[int, list[int]],
) -> None:
    count, order = shuffle
    in_order = sessions(count)
    expected, feed = Feed(), Feed()
    expected.take(*in_order)
    feed.take(*(in_order[i] for i in order))

    assert feed.whole() == expected.whole()
    mine, theirs = live_messages(feed, expected)
    assert mine == theirs


def test_a_cancellation_from_before_the_horizon_still_cancels_a_live_episodes_reminders() -> None:
    feed = Feed()
    feed.take(*sessions(10))
    booked_at = feed.now
    far = make_event(
        "appointment.booked",
        id="book-far",
        occurred_at=booked_at,
        appointment_id="a-far",
        start=booked_at + timedelta(days=90),
    )
    feed.take(far)
    late = make_event(
        "appointment.cancelled",
        id="cancel-far",
        occurred_at=booked_at + timedelta(hours=2),
        appointment_id="a-far",
    )
    # Months more of sessions: the booking, and the moment of the cancellation, are
    # folded into the checkpoint.
    feed.take(*sessions(40, first=booked_at + timedelta(hours=3)))
    assert feed.journey.horizon is not None and late.occurred_at < feed.journey.horizon
    assert far.id not in {e.id for e in feed.journey.events}
    reminders = {
        m.key
        for m in feed.journey.messages.values()
        if m.appointment_id == "a-far" and m.message_id.startswith("reminder")
    }
    assert len(reminders) == 2  # 72h and 24h before the far appointment

    taken = feed.take(late)

    cancelled = {a.message.key for a in taken if isinstance(a, CancelMessage)}
    assert reminders <= cancelled
    assert not reminders & set(feed.journey.messages)


def test_a_future_dated_event_does_not_freeze_the_journey() -> None:
    stream = sessions(40)
    plain, feed = Feed(), Feed()
    plain.take(*stream[:10])
    feed.take(*stream[:10])
    # A clock a year off at the source: an event "from next year" about nothing yet.
    future = make_event(
        "intake.completed",
        id="intake-next-year",
        occurred_at=feed.now + timedelta(days=365),
        appointment_id="a-other",
    )
    feed.take(future, now=feed.now)

    for event in stream[10:]:
        # The same decisions, event by event, as if the stray event were not there.
        assert sorted(keys(feed.take(event))) == sorted(keys(plain.take(event)))

    assert feed.journey.horizon is not None
    assert plain.now - AFTER - timedelta(days=31) < feed.journey.horizon <= plain.now - AFTER
    assert feed.whole() == plain.whole()
    assert [e.id for e in feed.journey.events][-1] == future.id


def test_an_episode_with_a_message_still_to_come_does_not_settle() -> None:
    feed = Feed()
    stream = sessions(1)
    feed.take(*stream)
    survey = next(m for m in feed.journey.messages.values() if m.message_id == "survey")

    # Long after the visit, but the survey is (made) due later still: nothing settles.
    late_survey = {**feed.journey.messages, survey.key: _due(survey, feed.now + timedelta(days=90))}
    journey = Journey("p-1", FLOW.id, feed.journey.events, feed.journey.episodes, late_survey)
    result = settle(journey, FLOW, feed.now + timedelta(days=60), AFTER)

    assert result.episodes == ()
    assert [e.id for e in result.journey.episodes] == [e.id for e in journey.episodes]
    assert result.journey.events == ()  # the events are in the checkpoint
    assert result.journey.checkpoint is not None
    assert result.journey.checkpoint.episodes[0].status is EpisodeStatus.COMPLETED


def _due(message: ScheduleMessage | object, due: datetime) -> object:
    from dataclasses import replace

    return replace(message, due_at=due)  # type: ignore[type-var]
