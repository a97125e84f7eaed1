"""Flow versions: which of a patient's journeys on one flow an event advances, and how.

When a flow's content changes its version is bumped. Episodes started on an
older version finish on it; only the current version starts new ones. For
one event, on one flow:

- each older version's journey that still has an active episode advances
  on its own version, but the event starts no episode there, now or in any
  re-fold: the episodes it already has fold again exactly as they did
  (their own opening events still open them), and no new one begins;
- the current version's journey advances too, but when an older version's
  episode took the event (a rebooking of its appointment, say), the event
  neither starts an episode on the current version nor brings its
  appointment into one, then or in any re-fold (`Journey.no_start`,
  `Journey.no_adopt`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from .actions import Decision
from .engine import advance
from .event import Event
from .flows.model import Flow
from .journey import EpisodeStatus, Journey

__all__ = ["advance_versions"]


def advance_versions(
    journeys: Mapping[int, Journey],
    event: Event,
    flow: Flow,
    older: Callable[[int], Flow],
    now: datetime,
) -> list[tuple[int, Decision]]:
    """The decisions `event` makes on the patient's journeys of `flow`, by version.

    `journeys` holds the patient's journeys on this flow by version, `flow`
    is the current version, and `older(version)` an older version's flow.
    """
    decisions: list[tuple[int, Decision]] = []
    taken = False
    for version in sorted(journeys):
        journey = journeys[version]
        if version == flow.version or not any(
            e.status is EpisodeStatus.ACTIVE for e in journey.episodes
        ):
            continue
        decision = advance(journey, event, older(version), now, may_start=False)
        taken = taken or decision.journey.episodes != journey.episodes
        decisions.append((version, decision))
    current = journeys.get(flow.version) or Journey.start(event.patient.id, flow.id)
    decisions.append(
        (flow.version, advance(current, event, flow, now, may_start=not taken, may_adopt=not taken))
    )
    return decisions
