"""The SQL store: one implementation for SQLite (the embedded default) and PostgreSQL.

`SqlStore` is the facade the composition roots build over one engine. It
composes the parts, each a module of its own over one shared `Transactions`
(`transactions.py`, which owns the connections and translates driver errors):

- the unit of work, one transaction per batch of events (`unit.py`);
- the message ledger the scheduler and dispatcher drive (`ledger.py`);
- rejected input (`rejected.py`), the sandbox outbox (`outbox.py`), the
  flow versions run (`flow_versions.py`) and the senders' token buckets
  (`buckets.py`);
- the read models of the API, dashboard, CLI and simulator (`queries.py`).

Provider feedback (`delivery.py`), import holds (`imports.py`) and the
inbound archive (`inbound.py`) are parts the composition roots build beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..decisions import DecisionRecord
from ..event import Channel, Event, EventType
from ..flows.model import Flow
from ..insight.figures import FigureFilter, FlowFigures
from ..journey import Journey, ScheduledMessage
from ..message_status import MessageStatus
from ..policies.pacing import Ask, Pace, Taken
from ..ports import (
    Claim,
    EpisodeView,
    Final,
    MessageView,
    OutboxEntry,
    SendingFacts,
    Sent,
)
from .buckets import SendBucketLedger
from .flow_versions import FlowVersionLog
from .ledger import SqlLedger
from .outbox import SqlOutbox
from .queries import FlowTotals, PatientEventView, ProcessedEvent, Queries
from .rejected import RejectedLog
from .transactions import Transactions, translated
from .unit import ImportHold, UnitOfWork

if TYPE_CHECKING:
    from ..ports import EventStore, FlowVersions, MessageLedger, Outbox, SendBuckets

__all__ = ["Claim", "OutboxEntry", "SendingFacts", "Sent", "SqlStore"]


class SqlStore:
    """The store over one SQLAlchemy engine: its parts, and their ports in one place."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transactions = Transactions(engine)
        self.ledger = SqlLedger(self.transactions)
        self.queries = Queries(self.transactions)
        self.sandbox = SqlOutbox(self.transactions)
        self.flows = FlowVersionLog(self.transactions)
        self.rejects = RejectedLog(self.transactions)
        self.buckets = SendBucketLedger(self.transactions)

    @property
    def dialect(self) -> str:
        return self.transactions.dialect

    @contextmanager
    def unit(self, now: datetime, hold: ImportHold | None = None) -> Iterator[UnitOfWork]:
        """One transaction for a batch of events; flushed and committed on exit.

        With `hold`, the messages the batch schedules wait for its import to close.
        """
        try:
            with self.engine.begin() as connection:
                work = UnitOfWork(connection, now, hold)
                yield work
                work.flush()
        except SQLAlchemyError as exc:
            raise translated(exc, "store write failed") from exc

    # -- connections (`Transactions`) -------------------------------------------------

    def holding_connection(self) -> AbstractContextManager[None]:
        return self.transactions.holding_connection()

    def together(self) -> AbstractContextManager[None]:
        return self.transactions.together()

    # -- rejected input, flow versions, the sandbox outbox ------------------------------

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        self.rejects.reject(body, source, reason, now)

    def reject_many(self, source: str, refused: Sequence[tuple[bytes, str]], now: datetime) -> None:
        self.rejects.reject_many(source, refused, now)

    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        return self.flows.flow_versions()

    def record_flow_version(self, flow_id: str, version: int, source: str, now: datetime) -> None:
        self.flows.record_flow_version(flow_id, version, source, now)

    def outbox_add(self, entry: OutboxEntry) -> int:
        return self.sandbox.outbox_add(entry)

    def outbox_find(self, key: str, channel: str) -> int | None:
        return self.sandbox.outbox_find(key, channel)

    def outbox_for(self, keys: Sequence[str]) -> dict[str, OutboxEntry]:
        return self.sandbox.outbox_for(keys)

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        return self.sandbox.outbox(limit)

    # -- the senders' token buckets (`SendBucketLedger`) ---------------------------------

    def take_tokens(
        self,
        sender: str,
        channel: Channel,
        pace: Pace,
        sends: Sequence[Ask],
        now: datetime,
    ) -> list[Taken]:
        return self.buckets.take_tokens(sender, channel, pace, sends, now)

    # -- the message ledger (`SqlLedger`) -----------------------------------------------

    def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[Claim]:
        return self.ledger.claim_due(now, owner, lease_until, limit)

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        return self.ledger.fail_held(key, owner, now, reason)

    def lock_messages(self, keys: Iterable[str]) -> None:
        self.ledger.lock_messages(keys)

    def begin_sends(
        self,
        channels: Mapping[str, Channel],
        owner: str,
        now: datetime,
        lease_until: datetime | None = None,
    ) -> dict[str, int]:
        return self.ledger.begin_sends(channels, owner, now, lease_until)

    def renew(self, keys: Iterable[str], owner: str, until: datetime) -> set[str]:
        return self.ledger.renew(keys, owner, until)

    def finish(
        self,
        message: ScheduledMessage,
        owner: str,
        now: datetime,
        status: MessageStatus,
        reason: str | None,
        *,
        channel: Channel | None = None,
        language: str | None = None,
        provider_id: str | None = None,
        attempt_outcome: str | None = None,
        error: str | None = None,
    ) -> bool:
        return self.ledger.finish(
            message,
            owner,
            now,
            status,
            reason,
            channel=channel,
            language=language,
            provider_id=provider_id,
            attempt_outcome=attempt_outcome,
            error=error,
        )

    def finish_sent(self, sends: Sequence[Sent], owner: str) -> set[str]:
        return self.ledger.finish_sent(sends, owner)

    def finish_all(self, finals: Sequence[Final], owner: str, now: datetime) -> set[str]:
        return self.ledger.finish_all(finals, owner, now)

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        return self.ledger.unsend(key, owner, now, outcome, error)

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        return self.ledger.hold(key, owner, until, reason)

    def reschedule(
        self,
        message: ScheduledMessage,
        owner: str,
        now: datetime,
        due_at: datetime,
        reason: str,
        *,
        attempt_outcome: str | None = None,
        error: str | None = None,
        audit: bool = True,
    ) -> bool:
        return self.ledger.reschedule(
            message,
            owner,
            now,
            due_at,
            reason,
            attempt_outcome=attempt_outcome,
            error=error,
            audit=audit,
        )

    def sending_facts(self, messages: Sequence[ScheduledMessage], since: datetime) -> SendingFacts:
        return self.ledger.sending_facts(messages, since)

    # -- read models (`Queries`) --------------------------------------------------------

    def ping(self) -> None:
        self.queries.ping()

    def next_due(self) -> datetime | None:
        return self.queries.next_due()

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]:
        return self.queries.flow_journeys(flow_id)

    def flow_figures(self, flow: Flow, chosen: FigureFilter | None = None) -> FlowFigures:
        return self.queries.flow_figures(flow, chosen)

    def running_by_version(self, flow_id: str) -> dict[int, int]:
        return self.queries.running_by_version(flow_id)

    def flow_totals(self) -> dict[str, FlowTotals]:
        return self.queries.flow_totals()

    def patient_journeys(self, patient_id: str) -> list[tuple[int, Journey]]:
        return self.queries.patient_journeys(patient_id)

    def patient_events(self, patient_id: str, limit: int = 1000) -> list[PatientEventView]:
        return self.queries.patient_events(patient_id, limit)

    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        flow_event_types: frozenset[EventType] | None = None,
    ) -> Iterator[Event]:
        return self.queries.history(since, until, flow_event_types)

    def processed_events(self, patient_ids: Sequence[str]) -> list[ProcessedEvent]:
        return self.queries.processed_events(patient_ids)

    def audit(
        self,
        *,
        flow: str | None = None,
        since: datetime | None = None,
        patient_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        return self.queries.audit(
            flow=flow, since=since, patient_id=patient_id, status=status, limit=limit
        )

    def audit_after(self, position: int) -> tuple[list[DecisionRecord], int]:
        return self.queries.audit_after(position)

    def message_statuses(self) -> dict[str, int]:
        return self.queries.message_statuses()

    def messages(self, *, patient_id: str | None = None) -> list[MessageView]:
        return self.queries.messages(patient_id=patient_id)

    def episodes(self, patient_id: str) -> list[EpisodeView]:
        return self.queries.episodes(patient_id)


if TYPE_CHECKING:

    def _implements(
        store: SqlStore,
    ) -> tuple[EventStore, MessageLedger, Outbox, FlowVersions, SendBuckets]:
        """The ports this store implements, checked by mypy."""
        return store, store, store, store, store
