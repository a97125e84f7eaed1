"""The console's one door to measured figures: swap these functions, and every page follows.

Today they read journeys through the store and fold them (`insight.reading`);
faster aggregates may replace them without any page changing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime

from ..event import EventType
from ..flows.model import Flow
from ..insight import FlowFigures, PatientEvent, flow_figures
from ..insight.reading import measured
from ..journey import EpisodeStatus
from ..store import SqlStore

__all__ = ["AuditFilters", "audit_figures", "flow_figures_for", "running_by_version"]


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What the audit page narrows a flow's figures to; None takes everything.

    `version` keeps the episodes run on it; `since`/`until` (inclusive UTC days)
    the episodes that started in them; `persona` the episodes whose opening
    event matches it. `language` and `channel` narrow the messages: a message
    counts when any of its audited decisions was in that language or channel.
    """

    version: int | None = None
    since: date | None = None
    until: date | None = None
    persona: str | None = None
    language: str | None = None
    channel: str | None = None

    def started_in(self, at: datetime) -> bool:
        day = at.date()
        return (self.since is None or day >= self.since) and (
            self.until is None or day <= self.until
        )


def flow_figures_for(store: SqlStore, flow: Flow) -> FlowFigures:
    """The measured figures of `flow` (funnel, messages, transitions), all versions together."""
    return measured(store, flow)


def running_by_version(store: SqlStore, flow_id: str) -> dict[int, int]:
    """How many episodes of `flow_id` are still active, by the version they run on."""
    running: Counter[int] = Counter()
    for version, journey in store.flow_journeys(flow_id):
        running[version] += sum(e.status is EpisodeStatus.ACTIVE for e in journey.episodes)
    return dict(running)


def audit_figures(store: SqlStore, flow: Flow, filters: AuditFilters) -> FlowFigures:
    """The figures of `flow` (the version `filters.version` names, if any) narrowed by `filters`."""
    journeys = [j for v, j in store.flow_journeys(flow.id) if filters.version in (None, v)]
    if filters.since is not None or filters.until is not None:
        journeys = [
            replace(j, episodes=tuple(e for e in j.episodes if filters.started_in(e.started_at)))
            for j in journeys
        ]
    records = [r for r in store.audit(flow=flow.id) if filters.version in (None, r.flow_version)]
    if filters.language is not None or filters.channel is not None:
        kept = {
            r.key
            for r in records
            if filters.language in (None, r.language) and filters.channel in (None, r.channel)
        }
        records = [r for r in records if r.key in kept]
    known = {t.value: t for t in EventType}
    events = [
        PatientEvent(e.event_id, e.patient_id, known[e.type], e.occurred_at)
        for e in store.processed_events([j.patient_id for j in journeys])
        if e.type in known
    ]
    return flow_figures(flow, journeys, records, events, persona=filters.persona)
