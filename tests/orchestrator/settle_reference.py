"""`settle` as it was before its fast paths (kafka16, c13d005): the oracle its differential test compares with.

Kept verbatim but for names; nothing outside the tests uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from orchestrator.flows.model import Flow
from orchestrator.fold import Fold
from orchestrator.journey import Checkpoint, EpisodeStatus, Journey, ScheduledMessage
from orchestrator.settle import Settled


def reference_settle(journey: Journey, flow: Flow, now: datetime, after: timedelta) -> Settled:
    """Move the checkpoint up towards `now - after`, and settle out the episodes long over."""
    horizon = now - after
    events = journey.events
    upcoming = journey.next_checkpoint
    if not events or events[0].occurred_at >= horizon:
        if upcoming is None and events:
            return Settled(replace(journey, next_checkpoint=_state(journey)))
        return Settled(journey)  # nothing to fold in: the checkpoint stays
    cut = next((i for i, e in enumerate(events) if e.occurred_at >= horizon), len(events))
    if upcoming is not None:
        if upcoming.holds > cut:
            return Settled(journey)  # not all its events are before the horizon yet
        # Taken as those events were folded: the checkpoint moves up for free.
        held, base = upcoming.holds, upcoming
    else:
        # A late event made the next checkpoint wrong: fold up to the horizon again.
        work = Fold.resume(journey.at_checkpoint(), flow)
        for event in events[:cut]:
            work.step(event)
        held = cut
        base = Checkpoint(horizon, work.frozen_episodes(), work.messages, work.patient)
    current = {e.id: e for e in journey.episodes}
    live = _live(journey.messages, horizon) | _live(base.messages, horizon)
    settled = tuple(
        e
        for e in base.episodes
        if e.status is not EpisodeStatus.ACTIVE
        and e.ended_at is not None
        and e.ended_at < horizon
        and e.id not in live
        and current.get(e.id) == e
    )
    gone = {e.id for e in settled}
    last = events[held - 1].occurred_at
    kept = events[held:]
    folded = {e.id for e in events[:held]}
    bounded = replace(
        journey,
        events=kept,
        episodes=tuple(e for e in journey.episodes if e.id not in gone),
        messages=_without(journey.messages, gone) if gone else journey.messages,
        checkpoint=Checkpoint(
            at=max(last, journey.checkpoint.at) if journey.checkpoint else last,
            episodes=tuple(e for e in base.episodes if e.id not in gone),
            messages=_without(base.messages, gone) if gone else base.messages,
            patient=base.patient,
        ),
        no_start=journey.no_start - folded if journey.no_start else journey.no_start,
        no_adopt=journey.no_adopt - folded if journey.no_adopt else journey.no_adopt,
    )
    return Settled(replace(bounded, next_checkpoint=_state(bounded)), settled)


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
