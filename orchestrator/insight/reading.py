"""The shell of the figures: one entry point, whichever store holds them.

A SQL store aggregates them in SQL (`store/figures.py`, over the stage
visits kept as events are processed): no journey is read. Any other store
(at the simulator's sizes) has them computed from its journeys by
`flow_figures`, the reference the SQL figures are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..decisions import DecisionRecord
from ..event import EventType
from ..flows.model import Flow
from ..journey import Journey
from ..store import SqlStore
from ..store.queries import ProcessedEvent
from .figures import FigureFilter, FlowFigures, PatientEvent, flow_figures

__all__ = ["JourneyReads", "from_journeys", "measured"]


class JourneyReads(Protocol):
    """What figures from journeys read of a store."""

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]: ...

    def processed_events(self, patient_ids: Sequence[str]) -> list[ProcessedEvent]: ...

    def audit(self, *, flow: str | None = None) -> list[DecisionRecord]: ...


def measured(
    store: JourneyReads,
    flow: Flow,
    persona: str | None = None,
    *,
    chosen: FigureFilter | None = None,
) -> FlowFigures:
    """The measured figures of `flow`; `chosen` (or just `persona`) picks what counts.

    On a SQL store every filter of `chosen` applies; from journeys, only its persona.
    """
    chosen = chosen or FigureFilter(persona=persona)
    if isinstance(store, SqlStore):
        return store.flow_figures(flow, chosen)
    return from_journeys(store, flow, chosen.persona)


def from_journeys(store: JourneyReads, flow: Flow, persona: str | None = None) -> FlowFigures:
    """The figures from every journey of the flow, its audit and its patients' events."""
    journeys = [journey for _, journey in store.flow_journeys(flow.id)]
    records = store.audit(flow=flow.id)
    known = {t.value: t for t in EventType}
    events = [
        PatientEvent(e.event_id, e.patient_id, known[e.type], e.occurred_at)
        for e in store.processed_events([j.patient_id for j in journeys])
        if e.type in known
    ]
    return flow_figures(flow, journeys, records, events, persona=persona)
