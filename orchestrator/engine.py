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
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

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
from .journey import EpisodeStatus, Journey

__all__ = ["advance", "route"]


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
    if event.type not in flow.event_types or any(e.id == event.id for e in journey.events):
        return Decision(journey, ())
    if not may_start or not may_adopt:
        journey = replace(
            journey,
            no_start=journey.no_start | {event.id} if not may_start else journey.no_start,
            no_adopt=journey.no_adopt | {event.id} if not may_adopt else journey.no_adopt,
        )
    key = event.sort_key()
    events = journey.events
    in_order = not events or key >= events[-1].sort_key()
    if in_order:
        position = len(events)
        ordered = (*events, event)
    else:
        position = bisect_right([e.sort_key() for e in events], key)
        ordered = (*events[:position], event, *events[position:])
    # The next checkpoint holds the first events as they were folded: one
    # placed among them makes it wrong.
    upcoming = journey.next_checkpoint
    if upcoming is not None and position < upcoming.holds:
        upcoming = None
    if not journey.episodes and (
        event.id in journey.no_start or not any(t.matches(event) for t in flow.starts_on)
    ):
        # Nothing to move and nothing to start: keep the event, in its place,
        # for an earlier event that may yet arrive and start an episode.
        patient = event.patient if in_order else journey.patient
        kept = replace(
            journey, events=ordered, dropped={}, patient=patient, next_checkpoint=upcoming
        )
        return Decision(kept, ())
    if in_order:
        work = Fold.resume(journey, flow)
        work.step(event)
        after = work.freeze(ordered)
        return Decision(after, _diff(journey, after, flow, now, work.touched))
    # From the checkpoint: an event older than the horizon lands first, after
    # everything the checkpoint holds (see `orchestrator.settle`).
    work = Fold.resume(journey.at_checkpoint(), flow)
    for each in ordered:
        work.step(each)
    after = replace(work.freeze(ordered), next_checkpoint=upcoming)
    return Decision(after, _diff(journey, after, flow, now))


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
        seen = set(old.history) if old is not None else set()
        actions += [
            EnterStage(flow.id, episode.id, v.stage_id, v.event_id, v.entered_at)
            for v in episode.history
            if v not in seen
        ]
        was_active = old is None or old.status is EpisodeStatus.ACTIVE
        if episode.status is not EpisodeStatus.ACTIVE and was_active:
            outcome = episode.outcome or episode.status.value
            actions.append(EndEpisode(flow.id, episode.id, outcome, episode.ended_at or now))
    keys = list(touched) if touched is not None else [*before.messages, *after.messages]
    for key in dict.fromkeys(keys):
        old_message = before.messages.get(key)
        message = after.messages.get(key)
        if message is None:
            if old_message is not None:
                actions.append(CancelMessage(old_message, after.dropped.get(key, "superseded")))
        elif old_message is message or old_message == message:
            continue
        elif old_message is None and message.expires_at is not None and message.expires_at <= now:
            actions.append(ExpireMessage(message, "expired_before_scheduling"))
        elif old_message is None and message.anchor in SUBJECT_ANCHORS and message.due_at < now:
            # Its moment (72h before the visit, a day after discharge) passed before
            # anyone knew of it; sent now it would say the wrong thing.
            actions.append(ExpireMessage(message, "moment_passed"))
        else:
            actions.append(ScheduleMessage(message))
    return tuple(actions)
