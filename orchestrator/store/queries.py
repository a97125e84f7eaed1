"""Read models: what the API, the dashboard, the CLI, the insight reports and the simulator read.

Each query reads in one snapshot (`Transactions.read`) and returns typed
values (`MessageView`, `EpisodeView`, `FlowTotals`, `ProcessedEvent`), never
rows: the row classes stay inside this package.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from ..decisions import DecisionRecord
from ..event import Event, EventType
from ..flows.model import Flow
from ..insight.figures import FigureFilter, FlowFigures
from ..journey import Episode, Journey
from ..ports import EpisodeView, MessageView
from . import codec, figures
from .history import read_history
from .rows import chunks, record_from_row
from .tables import (
    AuditRow,
    EpisodeRow,
    JourneyRow,
    MessageTallyRow,
    ProcessedEventRow,
    ScheduledMessageRow,
)
from .transactions import Transactions

__all__ = [
    "FlowTotals",
    "PatientEventView",
    "ProcessedEvent",
    "Queries",
    "settled_episodes",
    "whole_journeys",
]

# A patient's timeline reads at most this many of their events (the newest).
PATIENT_EVENTS_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class FlowTotals:
    """One flow's episodes, and its messages by audited status (the dashboard's flow list)."""

    episodes: int = 0
    by_status: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcessedEvent:
    """An event the processor took, as the insight reports count it."""

    event_id: str
    patient_id: str
    type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PatientEventView:
    """An event the processor took, as a patient's timeline shows it: with where it came from."""

    event_id: str
    type: str
    source: str
    occurred_at: datetime
    received_at: datetime


class Queries:
    """The store's read models over its shared `Transactions`."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def ping(self) -> None:
        """Raises `StoreError` when the store cannot be reached."""
        with self.transactions.read() as c:
            c.execute(text("SELECT 1"))

    def next_due(self) -> datetime | None:
        """When the earliest scheduled message falls due; None when none waits.

        A driver on a virtual clock (the simulator) jumps to it instead of
        stepping through time where nothing happens.
        """
        table = ScheduledMessageRow
        query = (
            select(table.due_at).where(table.status == "scheduled").order_by(table.due_at).limit(1)
        )
        with self.transactions.read() as c:
            return c.execute(query).scalar()

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]:
        """Every journey on `flow_id`, any version, settled episodes included (the funnel)."""
        return self._journeys(
            JourneyRow.flow_id == flow_id,
            EpisodeRow.flow_id == flow_id,
            (JourneyRow.patient_id, JourneyRow.flow_version),
        )

    def flow_figures(self, flow: Flow, chosen: FigureFilter | None = None) -> FlowFigures:
        """`flow`'s figures aggregated in SQL (`store/figures.py`), in one snapshot."""
        with self.transactions.read() as c:
            return figures.flow_figures(c, flow, chosen)

    def patient_journeys(self, patient_id: str) -> list[tuple[int, Journey]]:
        """One patient's journeys, every flow and version, settled episodes included."""
        return self._journeys(
            JourneyRow.patient_id == patient_id,
            EpisodeRow.patient_id == patient_id,
            (JourneyRow.flow_id, JourneyRow.flow_version),
        )

    def _journeys(
        self, journeys: Any, episodes: Any, order: tuple[Any, ...]
    ) -> list[tuple[int, Journey]]:
        """The journeys `journeys` picks, with the settled episodes `episodes` picks put back."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(
                    JourneyRow.patient_id,
                    JourneyRow.flow_id,
                    JourneyRow.flow_version,
                    JourneyRow.state,
                )
                .where(journeys)
                .order_by(*order)
            ).all()
            return whole_journeys(rows, settled_episodes(c, episodes))

    def patient_events(
        self, patient_id: str, limit: int = PATIENT_EVENTS_LIMIT
    ) -> list[PatientEventView]:
        """One patient's processed events in the order they occurred: the newest `limit`."""
        table = ProcessedEventRow
        query = (
            select(table.event_id, table.type, table.source, table.occurred_at, table.received_at)
            .where(table.patient_id == patient_id)
            .order_by(table.occurred_at.desc(), table.event_id.desc())
            .limit(limit)
        )
        with self.transactions.read() as c:
            rows = c.execute(query).all()
        return [PatientEventView(r[0], r[1], r[2], r[3], r[4]) for r in reversed(rows)]

    def running_by_version(self, flow_id: str) -> dict[int, int]:
        """How many episodes of `flow_id` are active, by the version they run on (a GROUP BY)."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(EpisodeRow.flow_version, func.count())
                .where(EpisodeRow.flow_id == flow_id, EpisodeRow.status == "active")
                .group_by(EpisodeRow.flow_version)
            )
            return {int(version): int(n) for version, n in rows}

    def flow_totals(self) -> dict[str, FlowTotals]:
        """Per flow: episodes, and audit decisions by status (the dashboard's flow list)."""
        episodes: dict[str, int] = {}
        by_status: dict[str, dict[str, int]] = {}
        with self.transactions.read() as c:
            for flow_id, count in c.execute(
                select(EpisodeRow.flow_id, func.count()).group_by(EpisodeRow.flow_id)
            ):
                episodes[flow_id] = int(count)
            # Messages per status from the audit's tallies (kept by a trigger,
            # migration 0011), not a count of distinct keys over the whole audit.
            tally = MessageTallyRow.__table__.c
            for flow_id, status, count in c.execute(
                select(tally.flow_id, tally.status, func.sum(tally["keys"]))
                .group_by(tally.flow_id, tally.status)
                .having(func.sum(tally["keys"]) > 0)
            ):
                by_status.setdefault(flow_id, {})[status] = int(count)
        return {
            flow_id: FlowTotals(episodes.get(flow_id, 0), by_status.get(flow_id, {}))
            for flow_id in episodes.keys() | by_status.keys()
        }

    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        flow_event_types: frozenset[EventType] | None = None,
    ) -> Iterator[Event]:
        """The processed events that occurred in [since, until), in fold order, read in chunks."""
        return read_history(self.transactions.read, since, until, flow_event_types)

    def processed_events(self, patient_ids: Sequence[str]) -> list[ProcessedEvent]:
        """These patients' processed events."""
        table = ProcessedEventRow
        found: list[ProcessedEvent] = []
        with self.transactions.read() as c:
            for chunk in chunks(list(dict.fromkeys(patient_ids)), 500):
                rows = c.execute(
                    select(table.event_id, table.patient_id, table.type, table.occurred_at).where(
                        table.patient_id.in_(chunk)
                    )
                )
                found += [ProcessedEvent(r[0], r[1], r[2], r[3]) for r in rows]
        return found

    def audit(
        self,
        *,
        flow: str | None = None,
        since: datetime | None = None,
        patient_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        table = AuditRow
        query = select(table).order_by(table.id)
        if flow:
            query = query.where(table.flow_id == flow)
        if since:
            query = query.where(table.at >= since)
        if patient_id:
            query = query.where(table.patient_id == patient_id)
        if status:
            query = query.where(table.status == status)
        if limit:
            query = query.limit(limit)
        with self.transactions.read() as c:
            return [record_from_row(r) for r in c.execute(query).all()]

    def audit_after(self, position: int) -> tuple[list[DecisionRecord], int]:
        """The audit rows written after `position`, in order, and the position of the last.

        Start from 0; pass the returned position next time to read only what is new.
        """
        query = select(AuditRow).where(AuditRow.id > position).order_by(AuditRow.id)
        with self.transactions.read() as c:
            rows = c.execute(query).all()
        return [record_from_row(r) for r in rows], (rows[-1].id if rows else position)

    def message_statuses(self) -> dict[str, int]:
        """How many scheduled messages are in each status."""
        table = ScheduledMessageRow
        with self.transactions.read() as c:
            rows = c.execute(select(table.status, func.count()).group_by(table.status))
            return {status: int(count) for status, count in rows}

    def messages(self, *, patient_id: str | None = None) -> list[MessageView]:
        table = ScheduledMessageRow
        query = select(table).order_by(table.created_at, table.key)
        if patient_id:
            query = query.where(table.patient_id == patient_id)
        with self.transactions.read() as c:
            return [
                MessageView(
                    key=r.key,
                    flow=r.flow_id,
                    flow_version=r.flow_version,
                    episode=r.episode_id,
                    stage=r.stage_id,
                    message=r.message_id,
                    recipient=r.recipient,
                    status=r.status,
                    reason=r.reason,
                    due_at=r.due_at,
                    channel=r.channel,
                    attempts=r.attempts,
                    sent_at=r.sent_at,
                )
                for r in c.execute(query).all()
            ]

    def episodes(self, patient_id: str) -> list[EpisodeView]:
        table = EpisodeRow
        with self.transactions.read() as c:
            return [
                EpisodeView(
                    id=r.id,
                    flow=r.flow_id,
                    flow_version=r.flow_version,
                    stage=r.stage_id,
                    status=r.status,
                    outcome=r.outcome,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                )
                for r in c.execute(
                    select(table).where(table.patient_id == patient_id).order_by(table.started_at)
                ).all()
            ]


def settled_episodes(c: Connection, where: Any) -> dict[tuple[str, str, int], list[Episode]]:
    """Settled episodes (`orchestrator.settle`) by journey."""
    found: dict[tuple[str, str, int], list[Episode]] = {}
    rows = c.execute(
        select(
            EpisodeRow.patient_id, EpisodeRow.flow_id, EpisodeRow.flow_version, EpisodeRow.settled
        ).where(where, EpisodeRow.settled.is_not(None))
    )
    for patient_id, flow_id, version, settled in rows:
        episode = codec.loads(Episode, cast(str, settled))
        found.setdefault((patient_id, flow_id, version), []).append(episode)
    return found


def whole_journeys(
    rows: Sequence[Any], settled: dict[tuple[str, str, int], list[Episode]]
) -> list[tuple[int, Journey]]:
    """(version, journey) of each (patient, flow, version, state) row, its settled episodes back."""
    return [
        (version, codec.loads(Journey, state).with_settled(settled.get((pid, fid, version), ())))
        for pid, fid, version, state in rows
    ]
