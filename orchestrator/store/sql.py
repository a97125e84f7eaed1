"""The SQL store: one implementation for SQLite (the embedded default) and PostgreSQL.

Two kinds of work go through it. Ingest opens a `UnitOfWork` per batch of
events: it reads what the engine needs, collects what the engine decided,
and writes it all in one transaction (state, scheduled and cancelled
messages, processed-event records, audit rows). The scheduler and dispatcher
claim due messages under a lease and move each one through its states in
short transactions of their own.

Driver errors are translated to `StoreError` here, once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from ..decisions import DecisionRecord, record
from ..errors import StoreError
from ..event import Channel, Event, Patient
from ..journey import EpisodeStatus, Journey, ScheduledMessage
from ..policies import ConsentRecord
from . import codec
from .tables import (
    AuditRow,
    ConsentRow,
    DeliveryAttemptRow,
    EpisodeRow,
    FlowVersionRow,
    JourneyRow,
    OutboxRow,
    PatientRow,
    ProcessedEventRow,
    RejectedInputRow,
    ScheduledMessageRow,
)

__all__ = [
    "Claim",
    "OutboxEntry",
    "SqlStore",
    "UnitOfWork",
    "connect",
]

# Statuses a scheduled message can still leave; everything else is final.
PENDING = ("scheduled", "claimed")
IN_FLIGHT = ("claimed", "sending")
FINAL = ("sent", "delivered", "failed", "suppressed", "cancelled", "expired")
# The largest body kept for a rejected input; larger ones are cut, and say so.
REJECTED_BODY_LIMIT = 64 * 1024


def connect(url: str, *, echo: bool = False) -> Engine:
    """A SQLAlchemy engine for `url`; SQLite in WAL mode with a busy timeout.

    Raises:
        StoreError: the URL names no usable database driver.
    """
    try:
        engine = create_engine(url, echo=echo, pool_pre_ping=not url.startswith("sqlite"))
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot open store {_redacted(url)}: {exc.__class__.__name__}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    # WAL lets readers (the API) run beside the one writer; NORMAL is durable
    # across a process crash, which is what the embedded runtime must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A due message a dispatcher holds under lease."""

    message: ScheduledMessage
    status: str
    attempts: int
    due_at: datetime
    channel: str | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    key: str
    channel: str
    to: str
    subject: str | None
    body: str
    html: str | None
    sent_at: datetime


@dataclass
class UnitOfWork:
    """What one batch of events reads and writes, committed together.

    Reads go to the database at once; writes are collected and flushed in
    bulk when the unit commits.
    """

    connection: Connection
    now: datetime
    _patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    _consents: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _journeys: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    _episodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _processed: list[dict[str, Any]] = field(default_factory=list)
    # What the engine decided about messages, in order: (kind, message, reason, event id).
    _decisions: list[tuple[str, ScheduledMessage, str | None, str]] = field(default_factory=list)

    # -- reads ----------------------------------------------------------------

    def processed(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these events were already processed."""
        ids = list(set(event_ids))
        found: set[str] = set()
        for chunk in _chunks(ids, 500):
            rows = self.connection.execute(
                select(ProcessedEventRow.event_id).where(ProcessedEventRow.event_id.in_(chunk))
            )
            found.update(row[0] for row in rows)
        return found

    def lock_patients(self, patient_ids: Iterable[str]) -> None:
        """Hold these patients' journeys for this transaction (PostgreSQL).

        Two processes that advance the same patient at once would each read the
        old journey and one would lose the other's update. Transaction-scoped
        advisory locks, taken in a fixed order, serialise them; SQLite allows
        one writer at a time and needs nothing more than the caller's lock.
        """
        if self.connection.dialect.name != "postgresql":
            return
        for patient_id in sorted(set(patient_ids)):
            self.connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 0))"), {"id": patient_id}
            )

    def journeys(self, patient_ids: Iterable[str]) -> dict[tuple[str, str, int], Journey]:
        """Every journey of these patients, by (patient, flow, version)."""
        found: dict[tuple[str, str, int], Journey] = {}
        for chunk in _chunks(list(set(patient_ids)), 500):
            rows = self.connection.execute(
                select(
                    JourneyRow.patient_id,
                    JourneyRow.flow_id,
                    JourneyRow.flow_version,
                    JourneyRow.state,
                ).where(JourneyRow.patient_id.in_(chunk))
            )
            for patient_id, flow_id, version, state in rows:
                found[(patient_id, flow_id, version)] = codec.loads(Journey, state)
        return found

    def patient_times(self, patient_ids: Iterable[str]) -> dict[str, datetime]:
        """When each stored patient snapshot was taken."""
        found: dict[str, datetime] = {}
        for chunk in _chunks(list(set(patient_ids)), 500):
            rows = self.connection.execute(
                select(PatientRow.id, PatientRow.snapshot_at).where(PatientRow.id.in_(chunk))
            )
            found.update({row[0]: row[1] for row in rows})
        return found

    def consent_times(self, patient_id: str) -> dict[tuple[str, str], datetime]:
        rows = self.connection.execute(
            select(ConsentRow.recipient, ConsentRow.channel, ConsentRow.at).where(
                ConsentRow.patient_id == patient_id
            )
        )
        return {(r, c): at for r, c, at in rows}

    # -- writes (collected) ---------------------------------------------------

    def save_patient(self, patient: Patient, at: datetime) -> None:
        self._patients[patient.id] = {
            "id": patient.id,
            "snapshot": codec.dumps(patient),
            "snapshot_at": at,
        }

    def save_consent(self, patient_id: str, recipient: str, record: ConsentRecord) -> None:
        key = (patient_id, recipient, record.channel.value)
        earlier = self._consents.get(key)
        if earlier is not None and earlier["at"] > record.at:
            return  # the batch already holds a later decision
        self._consents[key] = {
            "patient_id": patient_id,
            "recipient": recipient,
            "channel": record.channel.value,
            "granted": record.granted,
            "at": record.at,
            "source": record.source,
        }

    def save_journey(self, journey: Journey, version: int) -> None:
        active = any(e.status is EpisodeStatus.ACTIVE for e in journey.episodes)
        self._journeys[(journey.patient_id, journey.flow_id, version)] = {
            "patient_id": journey.patient_id,
            "flow_id": journey.flow_id,
            "flow_version": version,
            "state": codec.dumps(journey),
            "active": active,
            "updated_at": self.now,
        }
        for episode in journey.episodes:
            self._episodes[episode.id] = {
                "id": episode.id,
                "patient_id": journey.patient_id,
                "flow_id": journey.flow_id,
                "flow_version": version,
                "stage_id": episode.stage_id,
                "status": episode.status.value,
                "outcome": episode.outcome,
                "started_at": episode.started_at,
                "ended_at": episode.ended_at,
                "appointment_id": episode.appointment_id,
                "updated_at": self.now,
            }

    def mark_processed(self, event: Event) -> None:
        self._processed.append(
            {
                "event_id": event.id,
                "type": event.type.value,
                "source": event.source,
                "patient_id": event.patient.id,
                "occurred_at": event.occurred_at,
                "received_at": self.now,
            }
        )

    def schedule(self, message: ScheduledMessage, event_id: str) -> None:
        """Schedule a message, or update a pending one (a message already final stays)."""
        self._decisions.append(("schedule", message, None, event_id))

    def cancel(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Cancel a pending message; one claimed, being sent or final is left alone."""
        self._decisions.append(("cancel", message, reason, event_id))

    def expire(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Record a message that was pointless when it was decided."""
        self._decisions.append(("expire", message, reason, event_id))

    # -- flush ------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything collected (called once, before the commit)."""
        c = self.connection
        _upsert(c, PatientRow.__table__, list(self._patients.values()), ["id"])
        _upsert(
            c,
            ConsentRow.__table__,
            list(self._consents.values()),
            ["patient_id", "recipient", "channel"],
        )
        _upsert(
            c,
            JourneyRow.__table__,
            list(self._journeys.values()),
            ["patient_id", "flow_id", "flow_version"],
        )
        _upsert(c, EpisodeRow.__table__, list(self._episodes.values()), ["id"])
        if self._processed:
            c.execute(insert(ProcessedEventRow), self._processed)
        self._write_messages()

    def _write_messages(self) -> None:
        """Apply the message decisions against what the store holds, and audit what took.

        Each key's status is followed through the batch, starting from the
        database: a schedule inserts or updates a pending row, a cancel moves a
        pending row to cancelled, an expiry records a new row as expired.
        Decisions about rows that are already final change nothing and are not
        audited, so the audit never says "cancelled" of a message that was sent.
        """
        c = self.connection
        table = ScheduledMessageRow
        keys = list({m.key for _, m, _, _ in self._decisions})
        status: dict[str, str] = {}
        for chunk in _chunks(keys, 500):
            rows = c.execute(select(table.key, table.status).where(table.key.in_(chunk)))
            status.update({k: v for k, v in rows})
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, ScheduledMessage] = {}
        cancels: dict[str, str] = {}
        audit: list[DecisionRecord] = []
        for kind, message, reason, event_id in self._decisions:
            key, current = message.key, status.get(message.key)
            entry = record(message, self.now, "", reason, event_id=event_id)
            if kind == "schedule" and current is None:
                inserts[key] = _message_row(message, "scheduled", None, self.now)
                status[key] = "scheduled"
                audit.append(replace(entry, status="scheduled"))
            elif kind == "schedule" and current in PENDING:
                # An update (its expiry moved): the due time, and any deferral, stay.
                if key in inserts:
                    inserts[key] = _message_row(message, "scheduled", None, self.now)
                else:
                    updates[key] = message
            elif kind == "cancel" and current in PENDING:
                assert reason is not None
                if key in inserts:
                    inserts[key] |= {"status": "cancelled", "reason": reason}
                else:
                    cancels[key] = reason
                status[key] = "cancelled"
                audit.append(replace(entry, status="cancelled"))
            elif kind == "expire" and current is None:
                inserts[key] = _message_row(message, "expired", reason, self.now)
                status[key] = "expired"
                audit.append(replace(entry, status="expired"))
        if inserts:
            c.execute(insert(table), list(inserts.values()))
        for key, message in updates.items():
            c.execute(
                update(table)
                .where(table.key == key, table.status.in_(PENDING))
                .values(
                    payload=codec.dumps(message),
                    expires_at=message.expires_at,
                    episode_id=message.episode_id,
                    updated_at=self.now,
                )
            )
        # The dispatcher may have claimed a row meanwhile: only the rows this
        # statement moved are cancelled, and only they are audited as such.
        cancelled: set[str] = set()
        for reason, group in _group(cancels).items():
            for chunk in _chunks(group, 500):
                moved = c.execute(
                    update(table)
                    .where(table.key.in_(chunk), table.status.in_(PENDING))
                    .values(
                        status="cancelled",
                        reason=reason,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=self.now,
                    )
                    .returning(table.key)
                )
                cancelled.update(row[0] for row in moved)
        audit = [
            a
            for a in audit
            if not (a.status == "cancelled" and a.key in cancels and a.key not in cancelled)
        ]
        if audit:
            c.execute(insert(AuditRow), [_audit_row(a) for a in audit])


class SqlStore:
    """The store over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit(self, now: datetime) -> Iterator[UnitOfWork]:
        """One transaction for a batch of events; flushed and committed on exit."""
        try:
            with self.engine.begin() as connection:
                work = UnitOfWork(connection, now)
                yield work
                work.flush()
        except SQLAlchemyError as exc:
            raise StoreError(f"store write failed: {exc.__class__.__name__}") from exc

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"store operation failed: {exc.__class__.__name__}") from exc

    def ping(self) -> None:
        """Raises `StoreError` when the store cannot be reached."""
        with self._tx() as c:
            c.execute(text("SELECT 1"))

    # -- flows ------------------------------------------------------------------

    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Every flow version run before: (id, version) -> (digest, source)."""
        with self._tx() as c:
            rows = c.execute(
                select(
                    FlowVersionRow.flow_id,
                    FlowVersionRow.version,
                    FlowVersionRow.digest,
                    FlowVersionRow.source,
                )
            )
            return {(f, v): (d, s) for f, v, d, s in rows}

    def record_flow_version(self, flow_id: str, version: int, source: str, now: datetime) -> None:
        digest = hashlib.sha256(source.encode()).hexdigest()
        with self._tx() as c:
            c.execute(
                insert(FlowVersionRow).values(
                    flow_id=flow_id,
                    version=version,
                    digest=digest,
                    source=source,
                    first_seen_at=now,
                )
            )

    # -- rejected input ----------------------------------------------------------

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        """Keep input that could not be accepted, with why (cut at 64 KiB)."""
        truncated = len(body) > REJECTED_BODY_LIMIT
        with self._tx() as c:
            c.execute(
                insert(RejectedInputRow).values(
                    received_at=now,
                    source=source,
                    reason=reason,
                    body=body[:REJECTED_BODY_LIMIT],
                    truncated=truncated,
                )
            )

    def rejected(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._tx() as c:
            rows = c.execute(
                select(RejectedInputRow).order_by(RejectedInputRow.id.desc()).limit(limit)
            ).all()
            return [
                {
                    "id": r.id,
                    "received_at": r.received_at,
                    "source": r.source,
                    "reason": r.reason,
                    "body": r.body,
                    "truncated": r.truncated,
                }
                for r in rows
            ]

    # -- scheduling and dispatch ------------------------------------------------

    def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[Claim]:
        """Claim up to `limit` due messages, and any whose claimer's lease ran out.

        On PostgreSQL the candidates are locked with SKIP LOCKED, so several
        processes claim disjoint sets; SQLite has one writer at a time.
        """
        table = ScheduledMessageRow
        due = and_(table.status == "scheduled", table.due_at <= now)
        abandoned = and_(table.status.in_(IN_FLIGHT), table.lease_until < now)
        claims: list[Claim] = []
        with self._tx() as c:
            for condition, order in ((abandoned, table.lease_until), (due, table.due_at)):
                room = limit - len(claims)
                if room <= 0:
                    break
                candidates = select(table.key).where(condition).order_by(order).limit(room)
                if self.dialect == "postgresql":
                    candidates = candidates.with_for_update(skip_locked=True)
                keys = [row[0] for row in c.execute(candidates)]
                if not keys:
                    continue
                rows = c.execute(
                    select(
                        table.key,
                        table.payload,
                        table.status,
                        table.attempts,
                        table.due_at,
                        table.channel,
                    )
                    .where(table.key.in_(keys))
                    .order_by(order, table.key)
                ).all()
                c.execute(
                    update(table)
                    .where(table.key.in_(keys))
                    .values(
                        status=func.coalesce(
                            # A message caught mid-send stays "sending": its outcome is unknown.
                            _case_sending(table.status),
                            "claimed",
                        ),
                        lease_owner=owner,
                        lease_until=lease_until,
                        updated_at=now,
                    )
                )
                claims += [
                    Claim(codec.loads(ScheduledMessage, payload), status, attempts, due_at, channel)
                    for _, payload, status, attempts, due_at, channel in rows
                ]
        return claims

    def begin_send(self, key: str, owner: str, channel: Channel, now: datetime) -> int | None:
        """Mark a claimed message as being sent; returns the attempt number.

        Returns `None` when the claim was lost (cancelled meanwhile, or the
        lease taken over): the caller must not send.
        """
        table = ScheduledMessageRow
        with self._tx() as c:
            result = c.execute(
                update(table)
                .where(table.key == key, table.status == "claimed", table.lease_owner == owner)
                .values(
                    status="sending",
                    attempts=table.attempts + 1,
                    channel=channel.value,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                return None
            attempt = c.execute(select(table.attempts).where(table.key == key)).scalar_one()
            c.execute(
                insert(DeliveryAttemptRow).values(
                    key=key,
                    attempt=attempt,
                    channel=channel.value,
                    started_at=now,
                    outcome="pending",
                )
            )
            return int(attempt)

    def finish(
        self,
        message: ScheduledMessage,
        owner: str,
        now: datetime,
        status: str,
        reason: str | None,
        *,
        channel: Channel | None = None,
        language: str | None = None,
        provider_id: str | None = None,
        attempt_outcome: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Move a claimed or sending message to a final status, with its audit row.

        Returns whether this claimer still held it.
        """
        with self._tx() as c:
            moved = _owned_update(
                c,
                message.key,
                owner,
                IN_FLIGHT,
                status=status,
                reason=reason,
                provider_id=provider_id,
                sent_at=now if status == "sent" else None,
                channel=channel.value if channel else ScheduledMessageRow.channel,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if not moved:
                return False
            if attempt_outcome is not None:
                self._close_attempt(c, message.key, now, attempt_outcome, error, provider_id)
            c.execute(
                insert(AuditRow).values(
                    _audit_row(
                        record(
                            message,
                            now,
                            status,
                            reason,
                            channel=channel.value if channel else None,
                            language=language,
                        )
                    )
                )
            )
            return True

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        """A send that did not happen: back from "sending" to "claimed", lease kept.

        Used when a channel refused the message (the next channel may take
        it) and when a provider confirms an interrupted send never arrived.
        """
        with self._tx() as c:
            moved = _owned_update(c, key, owner, ("sending",), status="claimed", updated_at=now)
            if moved:
                self._close_attempt(c, key, now, outcome, error, None)
            return moved

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        """Keep a message in its in-flight status, under this claimer's lease until `until`."""
        with self._tx() as c:
            return _owned_update(c, key, owner, IN_FLIGHT, lease_until=until, reason=reason)

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
    ) -> bool:
        """Put a claimed message back, due at `due_at` (a deferral or a retry)."""
        with self._tx() as c:
            moved = _owned_update(
                c,
                message.key,
                owner,
                IN_FLIGHT,
                status="scheduled",
                reason=reason,
                due_at=due_at,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if not moved:
                return False
            if attempt_outcome is not None:
                self._close_attempt(c, message.key, now, attempt_outcome, error, None)
            entry = record(message, now, "scheduled", reason)
            c.execute(insert(AuditRow).values(_audit_row(entry) | {"due_at": due_at}))
            return True

    @staticmethod
    def _close_attempt(
        c: Connection,
        key: str,
        now: datetime,
        outcome: str,
        error: str | None,
        provider_id: str | None,
    ) -> None:
        table = DeliveryAttemptRow
        last = c.execute(
            select(func.max(table.id)).where(table.key == key, table.outcome == "pending")
        ).scalar()
        if last is not None:
            c.execute(
                update(table)
                .where(table.id == last)
                .values(finished_at=now, outcome=outcome, error=error, provider_id=provider_id)
            )

    # -- what the dispatcher reads ----------------------------------------------

    def patient(self, patient_id: str) -> Patient | None:
        with self._tx() as c:
            snapshot = c.execute(
                select(PatientRow.snapshot).where(PatientRow.id == patient_id)
            ).scalar_one_or_none()
        return codec.loads(Patient, snapshot) if snapshot else None

    def consent(self, patient_id: str, recipient: str) -> dict[Channel, ConsentRecord]:
        with self._tx() as c:
            rows = c.execute(
                select(
                    ConsentRow.channel, ConsentRow.granted, ConsentRow.at, ConsentRow.source
                ).where(ConsentRow.patient_id == patient_id, ConsentRow.recipient == recipient)
            )
            return {
                Channel(ch): ConsentRecord(Channel(ch), granted, at, source)
                for ch, granted, at, source in rows
            }

    def sent_since(
        self, patient_id: str, recipient: str, since: datetime
    ) -> dict[Channel, list[datetime]]:
        """When each channel last carried messages to this recipient (for caps)."""
        table = ScheduledMessageRow
        with self._tx() as c:
            rows = c.execute(
                select(table.channel, table.sent_at).where(
                    table.patient_id == patient_id,
                    table.recipient == recipient,
                    table.sent_at >= since,
                )
            )
            found: dict[Channel, list[datetime]] = {}
            for channel, at in rows:
                if channel is not None and at is not None:
                    found.setdefault(Channel(channel), []).append(at)
            return found

    def journey(self, patient_id: str, flow_id: str, version: int) -> Journey | None:
        with self._tx() as c:
            state = c.execute(
                select(JourneyRow.state).where(
                    JourneyRow.patient_id == patient_id,
                    JourneyRow.flow_id == flow_id,
                    JourneyRow.flow_version == version,
                )
            ).scalar_one_or_none()
        return codec.loads(Journey, state) if state else None

    def patient_journeys(self, patient_id: str) -> list[tuple[int, Journey]]:
        with self._tx() as c:
            rows = c.execute(
                select(JourneyRow.flow_version, JourneyRow.state)
                .where(JourneyRow.patient_id == patient_id)
                .order_by(JourneyRow.flow_id, JourneyRow.flow_version)
            )
            return [(version, codec.loads(Journey, state)) for version, state in rows]

    # -- sandbox outbox ---------------------------------------------------------

    def outbox_add(self, entry: OutboxEntry) -> int:
        with self._tx() as c:
            result = c.execute(
                insert(OutboxRow).values(
                    key=entry.key,
                    channel=entry.channel,
                    to_address=entry.to,
                    subject=entry.subject,
                    body=entry.body,
                    html=entry.html,
                    sent_at=entry.sent_at,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def outbox_find(self, key: str, channel: str) -> int | None:
        with self._tx() as c:
            return c.execute(
                select(func.min(OutboxRow.id)).where(
                    OutboxRow.key == key, OutboxRow.channel == channel
                )
            ).scalar()

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        with self._tx() as c:
            rows = c.execute(select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)).all()
            return [
                OutboxEntry(r.key, r.channel, r.to_address, r.subject, r.body, r.html, r.sent_at)
                for r in rows
            ]

    # -- audit and status queries ----------------------------------------------

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
        with self._tx() as c:
            return [_record(r) for r in c.execute(query).all()]

    def message_statuses(self) -> dict[str, int]:
        """How many scheduled messages are in each status."""
        table = ScheduledMessageRow
        with self._tx() as c:
            rows = c.execute(select(table.status, func.count()).group_by(table.status))
            return {status: int(count) for status, count in rows}

    def messages(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        table = ScheduledMessageRow
        query = select(table).order_by(table.created_at, table.key)
        if patient_id:
            query = query.where(table.patient_id == patient_id)
        with self._tx() as c:
            return [
                {
                    "key": r.key,
                    "flow": r.flow_id,
                    "flow_version": r.flow_version,
                    "episode": r.episode_id,
                    "stage": r.stage_id,
                    "message": r.message_id,
                    "recipient": r.recipient,
                    "status": r.status,
                    "reason": r.reason,
                    "due_at": r.due_at,
                    "channel": r.channel,
                    "attempts": r.attempts,
                    "sent_at": r.sent_at,
                }
                for r in c.execute(query).all()
            ]

    def episodes(self, patient_id: str) -> list[dict[str, Any]]:
        table = EpisodeRow
        with self._tx() as c:
            return [
                {
                    "id": r.id,
                    "flow": r.flow_id,
                    "flow_version": r.flow_version,
                    "stage": r.stage_id,
                    "status": r.status,
                    "outcome": r.outcome,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                }
                for r in c.execute(
                    select(table).where(table.patient_id == patient_id).order_by(table.started_at)
                ).all()
            ]

    def purge(self) -> None:
        """Delete every row (tests and benchmarks only)."""
        with self._tx() as c:
            for table in (
                AuditRow,
                ConsentRow,
                DeliveryAttemptRow,
                EpisodeRow,
                JourneyRow,
                OutboxRow,
                PatientRow,
                ProcessedEventRow,
                RejectedInputRow,
                ScheduledMessageRow,
                FlowVersionRow,
            ):
                c.execute(delete(table))


def _owned_update(
    c: Connection, key: str, owner: str, statuses: Sequence[str], **values: Any
) -> bool:
    """Update a message only while `owner` holds it in one of `statuses`.

    Returns False when the claim was lost (cancelled, or taken over after the
    lease ran out): the caller must then leave the message alone.
    """
    table = ScheduledMessageRow
    result = c.execute(
        update(table)
        .where(table.key == key, table.status.in_(statuses), table.lease_owner == owner)
        .values(**values)
    )
    return result.rowcount == 1


def _case_sending(status: Any) -> Any:
    return case((status == "sending", "sending"), else_=None)


def _message_row(
    message: ScheduledMessage, status: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "key": message.key,
        "patient_id": message.recipient.patient_id,
        "recipient": str(message.recipient),
        "flow_id": message.flow_id,
        "flow_version": message.flow_version,
        "episode_id": message.episode_id,
        "stage_id": message.stage_id,
        "message_id": message.message_id,
        "payload": codec.dumps(message),
        "status": status,
        "reason": reason,
        "due_at": message.due_at,
        "expires_at": message.expires_at,
        "attempts": 0,
        "channel": None,
        "provider_id": None,
        "lease_owner": None,
        "lease_until": None,
        "sent_at": None,
        "created_at": now,
        "updated_at": now,
    }


def _audit_row(entry: DecisionRecord) -> dict[str, Any]:
    return {
        "at": entry.at,
        "event_id": entry.event_id,
        "patient_id": entry.patient_id,
        "flow_id": entry.flow,
        "flow_version": entry.flow_version,
        "episode_id": entry.episode,
        "stage_id": entry.stage,
        "message_id": entry.message,
        "key": entry.key,
        "recipient": entry.recipient,
        "channel": entry.channel,
        "language": entry.language,
        "template": entry.template,
        "due_at": entry.due_at,
        "status": entry.status,
        "reason": entry.reason,
    }


def _record(row: Any) -> DecisionRecord:
    return DecisionRecord(
        at=row.at,
        patient_id=row.patient_id,
        flow=row.flow_id,
        flow_version=row.flow_version,
        episode=row.episode_id,
        stage=row.stage_id,
        message=row.message_id,
        recipient=row.recipient,
        channel=row.channel,
        language=row.language,
        template=row.template,
        due_at=row.due_at,
        status=row.status,
        reason=row.reason,
        key=row.key,
        event_id=row.event_id,
    )


def _upsert(
    connection: Connection, table: Any, rows: Sequence[Mapping[str, Any]], keys: list[str]
) -> None:
    """Insert rows, replacing those whose primary key exists."""
    if not rows:
        return
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(table)
    columns = [c for c in rows[0] if c not in keys]
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={c: statement.excluded[c] for c in columns}
    )
    connection.execute(statement, list(rows))


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _group(reasons: Mapping[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, reason in reasons.items():
        grouped.setdefault(reason, []).append(key)
    return grouped
