"""The console's one door to measured figures: swap these functions, and every page follows.

They read the store's aggregates, kept as events are processed
(`insight.reading.measured`, `store/figures.py`), never every journey.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ..flows.model import Flow
from ..insight import FlowFigures
from ..insight.figures import FigureFilter
from ..insight.reading import measured
from ..store import SqlStore

__all__ = ["AuditFilters", "audit_figures", "flow_figures_for", "running_by_version"]


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What the audit page narrows a flow's figures to; None takes everything.

    `version` keeps the episodes run on it; `since`/`until` (inclusive UTC days)
    the episodes that started in them; `persona` the episodes whose opening
    event matches it. `language` and `channel` narrow the messages to the
    audited decisions made in that language or on that channel.
    """

    version: int | None = None
    since: date | None = None
    until: date | None = None
    persona: str | None = None
    language: str | None = None
    channel: str | None = None

    def chosen(self) -> FigureFilter:
        """The same filters as the figures take them (days as UTC instants, `until` exclusive)."""

        def start_of(day: date | None) -> datetime | None:
            return datetime.combine(day, time(), UTC) if day is not None else None

        return FigureFilter(
            persona=self.persona,
            version=self.version,
            since=start_of(self.since),
            until=start_of(self.until + timedelta(days=1)) if self.until is not None else None,
            language=self.language,
            channel=self.channel,
        )


def flow_figures_for(store: SqlStore, flow: Flow) -> FlowFigures:
    """The measured figures of `flow` (funnel, messages, transitions), all versions together."""
    return measured(store, flow)


def running_by_version(store: SqlStore, flow_id: str) -> dict[int, int]:
    """How many episodes of `flow_id` are still active, by the version they run on."""
    return store.running_by_version(flow_id)


def audit_figures(store: SqlStore, flow: Flow, filters: AuditFilters) -> FlowFigures:
    """The figures of `flow` (the version `filters.version` names, if any) narrowed by `filters`.

    From the store's aggregates (`insight.reading.measured`): a language or a
    channel keeps the audited decisions made in it.
    """
    return measured(store, flow, chosen=filters.chosen())
