"""The journey engine: `advance(journey, event, flow, now) -> Decision`.

Pure: no I/O and no clock; `now` is an argument. The rules the file keeps:

1. A journey is a fold of its events in the order they *occurred*
   (`Event.sort_key`), not the order they arrived. An event that arrives
   late is inserted where it belongs and the journey is folded again, so an
   older event never undoes a newer one, and any reordering or duplication of
   a stream ends in the same journey. A journey is bounded
   (`orchestrator.settle`): an event that occurred before its horizon is
   folded after everything before the horizon, not in its place.
2. The actions are the difference between the journey before and after:
   messages it now wants and did not (schedule), messages it wanted and no
   longer does (cancel, with the reason the fold recorded), stages entered,
   episodes ended. A new message that is already pointless at `now` is
   expired rather than scheduled: past its expiry, or timed from an
   appointment or encounter at a moment that has already passed.

Within the fold, an event goes to one episode: the one that owns its
appointment or encounter (the event then reads as carrying the service the
episode knows for it); else the latest active episode it moves to a new stage,
if it is about the patient, a new booking or an admission; else a new episode
if the flow starts on it; else, for an event about the patient rather than
an appointment, the latest active episode. An event about an appointment no
episode owns, other than a booking, belongs to another care path. Exits that
match a patient-level event end every episode not already exited, completed
ones included, cancelling their pending follow-ups.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime
from operator import attrgetter

from .actions import (
    Action,
    CancelMessage,
    Decision,
    EndEpisode,
    EnterStage,
    ExpireMessage,
    ScheduleMessage,
)
from .event import Event
from .flows.model import Flow
from .fold import SUBJECT_ANCHORS, Fold
from .frozen import builder
from .journey import EpisodeStatus, Journey, StageVisit

__all__ = ["advance", "route"]

_ID = attrgetter("id")
# Builders for the values made on every decision, called by position: 19
# keyword arguments cost about three times the call. mypy checks each
# argument's type, and tests/orchestrator/test_frozen.py pins the field order.
_new_decision = builder(Decision)
_new_journey = builder(Journey)
_new_schedule = builder(ScheduleMessage)
_new_enter_stage = builder(EnterStage)


def route(event: Event, flows: Iterable[Flow]) -> list[Flow]:
    """The flows whose journeys `event` can change."""
    return [flow for flow in flows if event.type in flow.event_types]


def advance(
    journey: Journey,
    event: Event,
    flow: Flow,
    now: datetime,
    *,
    may_start: bool = True,
    may_adopt: bool = True,
) -> Decision:
    """Return the journey after `event` and the actions it calls for.

    With `may_start` false the event starts no episode of this journey, and
    with `may_adopt` false it brings its appointment or encounter into none;
    both now and in any re-fold (`Journey.no_start`, `Journey.no_adopt`).
    `versions.advance_versions` says which, for a flow with several versions.
    """
    events = journey.events
    if event.type not in flow.event_types or event.id in map(_ID, events):
        return _new_decision(journey, ())
    if not may_start or not may_adopt:
        journey = replace(
            journey,
            no_start=journey.no_start | {event.id} if not may_start else journey.no_start,
            no_adopt=journey.no_adopt | {event.id} if not may_adopt else journey.no_adopt,
        )
    in_order = not events or _not_before(event, events[-1])
    if in_order:
        position = len(events)
        ordered = (*events, event)
    else:
        key = event.sort_key()
        position = bisect_right([e.sort_key() for e in events], key)
        ordered = (*events[:position], event, *events[position:])
    # The next checkpoint holds the first events as they were folded: one
    # placed among them makes it wrong.
    upcoming = journey.next_checkpoint
    if upcoming is not None and position < upcoming.holds:
        upcoming = None
    if not journey.episodes and (event.id in journey.no_start or not flow.plan.starts_on(event)):
        # Nothing to move and nothing to start: keep the event, in its place,
        # for an earlier event that may yet arrive and start an episode.
        kept = _new_journey(
            journey.patient_id,
            journey.flow_id,
            ordered,
            journey.episodes,
            journey.messages,
            {},
            event.patient if in_order else journey.patient,
            journey.checkpoint,
            upcoming,
            journey.no_start,
            journey.no_adopt,
        )
        return _new_decision(kept, ())
    if in_order:
        work = Fold.resume(journey, flow)
        work.step(event)
        after = work.freeze(ordered)
        return _new_decision(after, _diff(journey, after, flow, now, work.touched))
    # From the checkpoint: an event older than the horizon lands first, after
    # everything the checkpoint holds (see `orchestrator.settle`).
    work = Fold.resume(journey.at_checkpoint(), flow)
    for each in ordered:
        work.step(each)
    after = replace(work.freeze(ordered), next_checkpoint=upcoming)
    return _new_decision(after, _diff(journey, after, flow, now))


def _not_before(event: Event, last: Event) -> bool:
    """`event.sort_key() >= last.sort_key()`, without building the keys when the times differ."""
    if event.occurred_at != last.occurred_at:
        return event.occurred_at > last.occurred_at
    return event.sort_key() >= last.sort_key()


def _diff(
    before: Journey,
    after: Journey,
    flow: Flow,
    now: datetime,
    touched: Iterable[str] | None = None,
) -> tuple[Action, ...]:
    """The actions that turn `before` into `after`.

    `touched` narrows the message comparison to the keys a fold step wrote;
    without it every key is compared (after a re-fold).
    """
    actions: list[Action] = []
    old_episodes = {ep.id: ep for ep in before.episodes}
    for episode in after.episodes:
        old = old_episodes.get(episode.id)
        if old is episode:
            continue  # not written by this fold
        seen = old.history if old is not None else ()
        history = episode.history
        known: Collection[StageVisit] = seen
        if history[: len(seen)] == seen:
            history = history[len(seen) :]  # what a fold step adds it appends
        else:
            known = set(seen)  # a re-fold: any visit may be new
        for v in history:
            if v not in known:
                actions.append(
                    _new_enter_stage(flow.id, episode.id, v.stage_id, v.event_id, v.entered_at)
                )
        was_active = old is None or old.status is EpisodeStatus.ACTIVE
        if episode.status is not EpisodeStatus.ACTIVE and was_active:
            outcome = episode.outcome or episode.status.value
            actions.append(
                EndEpisode(
                    flow_id=flow.id,
                    episode_id=episode.id,
                    outcome=outcome,
                    at=episode.ended_at or now,
                )
            )
    keys = touched if touched is not None else dict.fromkeys([*before.messages, *after.messages])
    old_messages, new_messages = before.messages, after.messages
    for key in keys:
        old_message = old_messages.get(key)
        message = new_messages.get(key)
        if message is None:
            if old_message is not None:
                actions.append(CancelMessage(old_message, after.dropped.get(key, "superseded")))
        elif old_message is not None:
            if old_message is not message and old_message != message:
                actions.append(_new_schedule(message))
        elif message.expires_at is not None and message.expires_at <= now:
            actions.append(ExpireMessage(message, "expired_before_scheduling"))
        elif message.anchor in SUBJECT_ANCHORS and message.due_at < now:
            # Its moment (72h before the visit, a day after discharge) passed before
            # anyone knew of it; sent now it would say the wrong thing.
            actions.append(ExpireMessage(message, "moment_passed"))
        else:
            actions.append(_new_schedule(message))
    return tuple(actions)
