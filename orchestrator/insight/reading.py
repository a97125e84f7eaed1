"""The shell of the figures: what `flow_figures` needs, read from the store."""

from __future__ import annotations

from ..event import EventType
from ..flows.model import Flow
from ..store import SqlStore
from .figures import FlowFigures, PatientEvent, flow_figures

__all__ = ["measured"]


def measured(store: SqlStore, flow: Flow, persona: str | None = None) -> FlowFigures:
    """The measured figures of `flow` from the store's journeys, audit and events."""
    journeys = [journey for _, journey in store.flow_journeys(flow.id)]
    records = store.audit(flow=flow.id)
    known = {t.value: t for t in EventType}
    events = [
        PatientEvent(e.event_id, e.patient_id, known[e.type], e.occurred_at)
        for e in store.processed_events([j.patient_id for j in journeys])
        if e.type in known
    ]
    return flow_figures(flow, journeys, records, events, persona=persona)
