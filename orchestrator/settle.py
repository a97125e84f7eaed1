"""Bounded journeys: the checkpoint follows the horizon, and episodes long over settle out.

Without a bound a journey keeps every event of its patient in its flow, and
each new event reads and rewrites all of them: a patient on dialysis reaches
thousands. `settle(journey, flow, now, after)` keeps it to what can still change:

1. The horizon is `now - after`, by the processing clock: an event's own time
   never moves it, so a future-dated event cannot freeze a journey. Events
   that occurred before the horizon are folded into the journey's checkpoint
   and no longer kept. The checkpoint only moves forward.
2. An episode settles out (of the checkpoint and of the journey) once it is
   over: it ended before the horizon, no event since the checkpoint has
   touched it, and none of its messages is due or expires at or after the
   horizon. The caller keeps settled episodes (the store does, for figures
   and the timeline); nothing is cancelled or sent because of settling.

What a late event can still change:

- one that occurred at or after the horizon is folded in its place, exactly
  as if it had arrived in order;
- one that occurred before the horizon is folded *at* the horizon: after
  everything the checkpoint holds, before every event since (such events
  among themselves in the order their batches arrive; the processor takes
  a batch in the order its events occurred, and does not settle while an
  import holds it). It reaches the episodes as they stood
  at the checkpoint: a late cancellation still cancels the reminders of a
  live episode's appointment, a late exit still ends live episodes. What it
  would have changed before the horizon is not undone, and it finds no
  settled episode: an event about a settled episode's appointment or
  encounter is about one no episode owns (a booking starts a new episode).

Messages of settled episodes are all past their staleness limit when
`after` is longer than the longest limit a message can have without an
expiry of its own (`ORCHESTRATOR_SETTLE_AFTER` is checked against it), so
settling never takes away a message that could still be sent.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .event import Event
from .flows.model import Flow
from .fold import Fold
from .journey import (
    DEFAULT_SETTLE_AFTER,
    Checkpoint,
    Episode,
    EpisodeStatus,
    Journey,
    ScheduledMessage,
)

__all__ = ["DEFAULT_SETTLE_AFTER", "Settled", "settle"]


@dataclass(frozen=True, slots=True)
class Settled:
    """A journey after `settle`, and the episodes that settled out of it."""

    journey: Journey
    episodes: tuple[Episode, ...] = ()


def settle(journey: Journey, flow: Flow, now: datetime, after: timedelta) -> Settled:
    """Move the checkpoint up towards `now - after`, and settle out the episodes long over.

    Cheap when nothing moves (the usual case on a live feed): a comparison or
    two and no copy. The checkpoint moves with no fold when the next
    checkpoint is due, or when every kept event is before the horizon (the
    journey as it stands is then their fold); only a next checkpoint that a
    late event made wrong costs a re-fold, of the events before the horizon.
    """
    horizon = now - after
    events = journey.events
    upcoming = journey.next_checkpoint
    if not events or events[0].occurred_at >= horizon:
        if upcoming is None and events:
            return Settled(replace(journey, next_checkpoint=_state(journey)))
        return Settled(journey)  # nothing to fold in: the checkpoint stays
    if upcoming is not None:
        holds = upcoming.holds
        # Events are in the order they occurred: is the last one it holds before the horizon?
        if holds > len(events) or (holds and events[holds - 1].occurred_at >= horizon):
            return Settled(journey)  # not all its events are before the horizon yet
        # Taken as those events were folded: the checkpoint moves up for free.
        return _moved(journey, holds, upcoming, horizon)
    cut = bisect_left(events, horizon, key=_occurred)  # the first at or after the horizon
    if cut == len(events):
        # All of them are before the horizon: the journey is their fold, as it stands.
        state = Checkpoint(horizon, journey.episodes, journey.messages, journey.patient)
        return _moved(journey, cut, state, horizon)
    # A late event made the next checkpoint wrong: fold up to the horizon again.
    work = Fold.resume(journey.at_checkpoint(), flow)
    for event in events[:cut]:
        work.step(event)
    base = Checkpoint(horizon, work.frozen_episodes(), work.messages, work.patient)
    return _moved(journey, cut, base, horizon)


def _moved(journey: Journey, held: int, base: Checkpoint, horizon: datetime) -> Settled:
    """The journey with its first `held` events folded into the checkpoint, `base` being
    the state after them; the episodes that settle out at `horizon` taken out."""
    episodes, messages = base.episodes, base.messages
    settled = _over(journey, episodes, messages, horizon)
    if settled:
        gone = {e.id for e in settled}
        episodes = tuple(e for e in episodes if e.id not in gone)
        messages = _without(messages, gone)
        kept_episodes = tuple(e for e in journey.episodes if e.id not in gone)
        kept_messages: Mapping[str, ScheduledMessage] = _without(journey.messages, gone)
    else:
        kept_episodes, kept_messages = journey.episodes, journey.messages
    events = journey.events
    last = events[held - 1].occurred_at
    kept = events[held:]
    folded = {e.id for e in events[:held]} if journey.no_start or journey.no_adopt else set()
    checkpoint = journey.checkpoint
    bounded = replace(
        journey,
        events=kept,
        episodes=kept_episodes,
        messages=kept_messages,
        checkpoint=Checkpoint(
            at=max(last, checkpoint.at) if checkpoint else last,
            episodes=episodes,
            messages=messages,
            patient=base.patient,
        ),
        # The journey as it stands, as its next checkpoint (holding every kept event).
        next_checkpoint=(
            Checkpoint(
                kept[-1].occurred_at, kept_episodes, kept_messages, journey.patient, len(kept)
            )
            if kept
            else None
        ),
        no_start=journey.no_start - folded if journey.no_start else journey.no_start,
        no_adopt=journey.no_adopt - folded if journey.no_adopt else journey.no_adopt,
    )
    return Settled(bounded, settled)


def _occurred(event: Event) -> datetime:
    return event.occurred_at


def _over(
    journey: Journey,
    episodes: tuple[Episode, ...],
    messages: Mapping[str, ScheduledMessage],
    horizon: datetime,
) -> tuple[Episode, ...]:
    """The checkpoint's `episodes` that settle out: ended before the horizon, untouched since
    (the journey has them as they are), no message due or expiring at or after it."""
    over = [
        e
        for e in episodes
        if e.status is not EpisodeStatus.ACTIVE and e.ended_at is not None and e.ended_at < horizon
    ]
    if not over:
        return ()
    live = _live(journey.messages, horizon)
    if messages is not journey.messages:
        live |= _live(messages, horizon)
    current = {e.id: e for e in journey.episodes}
    return tuple(e for e in over if e.id not in live and current.get(e.id) == e)


def _state(journey: Journey) -> Checkpoint | None:
    """The journey as it stands, as its next checkpoint (holding every kept event)."""
    if not journey.events:
        return None
    at = journey.events[-1].occurred_at
    return Checkpoint(at, journey.episodes, journey.messages, journey.patient, len(journey.events))


def _live(messages: Mapping[str, ScheduledMessage], horizon: datetime) -> set[str]:
    """The episodes with a message due or expiring at or after `horizon`."""
    return {
        m.episode_id
        for m in messages.values()
        if m.due_at >= horizon or (m.expires_at is not None and m.expires_at >= horizon)
    }


def _without(
    messages: Mapping[str, ScheduledMessage], episodes: set[str]
) -> dict[str, ScheduledMessage]:
    return {k: m for k, m in messages.items() if m.episode_id not in episodes}
