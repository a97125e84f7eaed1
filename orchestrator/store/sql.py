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
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import (
    Engine,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, SQLAlchemyError

from ..decisions import DecisionRecord, record
from ..errors import StoreError, UnstorableError
from ..event import Channel, Event, EventType, Patient
from ..journey import Episode, Journey, ScheduledMessage
from ..message_status import IN_FLIGHT, MessageStatus, check_finish, sources
from ..policies import ConsentRecord
from ..ports import Claim, OutboxEntry, SendingFacts, Sent
from . import codec
from .connection import READ_ONLY, READ_WRITE
from .history import read_history
from .rows import (
    REJECTED_BODY_LIMIT,
    audit_row,
    chunks,
    locking_in_key_order,
    record_from_row,
)
from .tables import (
    AuditRow,
    ConsentRow,
    DeliveryAttemptRow,
    EpisodeRow,
    FlowVersionRow,
    ImportRow,
    InboundMessageRow,
    JourneyRow,
    OutboxRow,
    PatientRow,
    ProcessedEventRow,
    RejectedInputRow,
    ScheduledMessageRow,
    Stamp,
    TestSendRow,
    WebhookReceiptRow,
)
from .unit import ImportHold, UnitOfWork

__all__ = ["Claim", "OutboxEntry", "SendingFacts", "Sent", "SqlStore"]


class SqlStore:
    """The store over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held = threading.local()

    @contextmanager
    def holding_connection(self) -> Iterator[None]:
        """Run this thread's store calls on one pooled connection until the block ends.

        Each call is still its own transaction; the connection is checked out
        (and, on PostgreSQL, pinged) once instead of once per call. The
        dispatcher holds one for each batch it dispatches.
        """
        if getattr(self._held, "connection", None) is not None:
            yield
            return
        try:
            with self.engine.connect() as connection:
                self._held.connection = connection
                try:
                    yield
                finally:
                    self._held.connection = None
        except SQLAlchemyError as exc:
            raise StoreError(f"store connection failed: {exc.__class__.__name__}") from exc

    @contextmanager
    def together(self) -> Iterator[None]:
        """Run this thread's store calls in the block as one transaction.

        The dispatcher records a whole batch's outcomes at once: one commit
        instead of one per message. An error in any call rolls the block back.
        """
        with self.holding_connection():
            held: Connection = self._held.connection
            if getattr(self._held, "joined", False):
                yield
                return
            try:
                with held.begin():
                    self._held.joined = True
                    self._held.later = {}
                    try:
                        yield
                        self._write_later(held)
                    finally:
                        self._held.joined = False
                        self._held.later = {}
            except SQLAlchemyError as exc:
                raise _translated(exc, "store write failed") from exc

    def _later(self, c: Connection, statement: Any, parameters: dict[str, Any]) -> None:
        """Execute now, or, inside `together`, with its kind at the end of the block.

        For writes nothing in the block reads back (audit rows, closed attempts):
        one executemany per kind instead of one round trip per message.
        """
        if getattr(self._held, "joined", False):
            # One executemany needs one set of columns: rows are grouped by theirs.
            rows = self._held.later.setdefault((statement, frozenset(parameters)), [])
            rows.append(parameters)
        else:
            c.execute(statement, parameters)

    def _write_later(self, c: Connection) -> None:
        later: dict[Any, list[dict[str, Any]]] = self._held.later
        self._held.later = {}
        for (statement, _), rows in later.items():
            c.execute(statement, rows)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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
            raise _translated(exc, "store write failed") from exc

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A transaction that may write (on SQLite it takes the write lock as it begins)."""
        with self._transaction(READ_WRITE) as connection:
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A transaction that only reads: one snapshot, and no write lock on SQLite.

        Inside `together` it joins the block's transaction, which reads as well.
        """
        with self._transaction(READ_ONLY) as connection:
            yield connection

    @contextmanager
    def _transaction(self, begin: Mapping[str, str]) -> Iterator[Connection]:
        held: Connection | None = getattr(self._held, "connection", None)
        try:
            if held is not None and getattr(self._held, "joined", False):
                if self.dialect == "postgresql":
                    # A refused statement aborts a PostgreSQL transaction: a savepoint
                    # confines it to this call, so one message's bad value does not
                    # undo the rest of the batch it is recorded with.
                    with held.begin_nested():
                        yield held
                else:
                    yield held
            elif held is not None:
                held.execution_options(**begin)
                try:
                    with held.begin():
                        yield held
                finally:
                    held.execution_options(**READ_WRITE)
            else:
                with self.engine.connect() as connection:
                    connection.execution_options(**begin)
                    with connection.begin():
                        yield connection
        except SQLAlchemyError as exc:
            raise _translated(exc, "store operation failed") from exc

    def ping(self) -> None:
        """Raises `StoreError` when the store cannot be reached."""
        with self._read() as c:
            c.execute(text("SELECT 1"))

    # -- flows ------------------------------------------------------------------

    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Every flow version run before: (id, version) -> (digest, source)."""
        with self._read() as c:
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
        with self._read() as c:
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

    def next_due(self) -> datetime | None:
        """When the earliest scheduled message falls due; None when none waits.

        A driver on a virtual clock (the simulator) jumps to it instead of
        stepping through time where nothing happens.
        """
        table = ScheduledMessageRow
        query = (
            select(table.due_at).where(table.status == "scheduled").order_by(table.due_at).limit(1)
        )
        with self._read() as c:
            return c.execute(query).scalar()

    def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[Claim]:
        """Claim up to `limit` due messages, and any whose claimer's lease ran out.

        On PostgreSQL the candidates are locked with SKIP LOCKED, so several
        processes claim disjoint sets; SQLite has one writer at a time.
        """
        table = ScheduledMessageRow
        due = and_(table.status == MessageStatus.SCHEDULED, table.due_at <= now)
        abandoned = and_(table.status.in_(IN_FLIGHT), table.lease_until < now)
        claims: list[Claim] = []
        unreadable: dict[str, str] = {}
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
                # The update checks `condition` again itself: whatever changed a
                # candidate since it was read (a cancel, another claimer) wins.
                claimed = set(
                    c.execute(
                        update(table)
                        .where(table.key.in_(keys), condition)
                        .values(
                            status=func.coalesce(
                                # A message caught mid-send stays "sending": its outcome is unknown.
                                _case_sending(table.status),
                                MessageStatus.CLAIMED,
                            ),
                            lease_owner=owner,
                            lease_until=lease_until,
                            updated_at=now,
                        )
                        .returning(table.key)
                    ).scalars()
                )
                decoded: dict[str, ScheduledMessage] = {}
                for key, payload, *_ in rows:
                    if key not in claimed:
                        continue
                    try:
                        decoded[key] = codec.loads(ScheduledMessage, payload)
                    except (ValidationError, ValueError, RecursionError) as exc:
                        # Failed below, alone: the rest of the batch is claimed as usual.
                        unreadable[key] = f"decode:message:{exc.__class__.__name__}"
                claims += [
                    Claim(decoded[key], MessageStatus(status), attempts, due_at, channel)
                    for key, _, status, attempts, due_at, channel in rows
                    if key in decoded
                ]
            for key, reason in unreadable.items():
                _fail_held(c, key, owner, now, reason)
        return claims

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        """Fail a message this claimer holds, from its row alone (its payload is not read).

        For a message that cannot be dispatched for a reason of its own data
        (its payload, patient or journey does not decode; the store refused a
        value of it): the audit row is copied from the message's columns, which
        the store already holds. Returns whether this claimer still held it.
        """
        with self._tx() as c:
            return _fail_held(c, key, owner, now, reason)

    def lock_messages(self, keys: Iterable[str]) -> None:
        """Lock these messages' rows for the rest of the transaction, in key order (PostgreSQL).

        The dispatcher updates a batch's messages one by one while an event
        may be cancelling or updating some of them: taking every lock first,
        in the key order the event processor also locks in, rules out the
        deadlock of each holding a row the other needs next. SQLite has one
        writer at a time and needs nothing.
        """
        if self.dialect != "postgresql":
            return
        with self._tx() as c:
            for chunk in chunks(sorted(set(keys)), 500):
                query = select(_MESSAGES.c.key).where(_MESSAGES.c.key.in_(chunk))
                c.execute(locking_in_key_order(query, _MESSAGES.c.key, self.dialect))

    def begin_send(self, key: str, owner: str, channel: Channel, now: datetime) -> int | None:
        """Mark a claimed message as being sent; returns the attempt number.

        Returns `None` when the claim was lost (cancelled meanwhile, or the
        lease taken over): the caller must not send.
        """
        return self.begin_sends({key: channel}, owner, now).get(key)

    def begin_sends(
        self,
        channels: Mapping[str, Channel],
        owner: str,
        now: datetime,
        lease_until: datetime | None = None,
    ) -> dict[str, int]:
        """Mark claimed messages as being sent, each on its channel; their attempt numbers.

        One statement per channel, not one per message. A message missing from
        the answer lost its claim (cancelled meanwhile, or the lease taken
        over): the caller must not send it. With `lease_until`, the lease of
        the messages marked is renewed to it (the sends start now).
        """
        by_channel: dict[Channel, list[str]] = {}
        for key, channel in channels.items():
            by_channel.setdefault(channel, []).append(key)
        attempts: dict[str, int] = {}
        with self._tx() as c:
            for channel, keys in by_channel.items():
                for chunk in chunks(keys, 500):
                    rows = c.execute(
                        _BEGIN_SENDS,
                        {
                            "m_keys": chunk,
                            "m_owner": owner,
                            "m_channel": channel.value,
                            "m_now": now,
                            "m_until": lease_until,
                        },
                    )
                    attempts.update({key: int(attempt) for key, attempt in rows})
            if attempts and any(s is _CLOSE_ATTEMPT for s, _ in getattr(self._held, "later", {})):
                # Closes waiting in the block must not reach these new pending attempts.
                self._write_later(c)
            for key, attempt in attempts.items():
                self._later(
                    c,
                    _INSERT_ATTEMPT,
                    {
                        "key": key,
                        "attempt": attempt,
                        "channel": channels[key].value,
                        "started_at": now,
                        "outcome": "pending",
                    },
                )
        return attempts

    def renew(self, keys: Iterable[str], owner: str, until: datetime) -> set[str]:
        """Extend this claimer's lease on `keys` to `until`; the keys it still holds.

        A key missing from the answer was taken over or settled by someone
        else (cancelled, reconciled): the caller must not send it.
        """
        held: set[str] = set()
        with self._tx() as c:
            for chunk in chunks(sorted(set(keys)), 500):
                rows = c.execute(_RENEW, {"m_keys": chunk, "m_owner": owner, "m_until": until})
                held.update(rows.scalars())
        return held

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
        """Move a claimed or sending message to a final status, with its audit row.

        Returns whether this claimer still held it.

        Raises:
            ValueError: `status` is not one a held message may move to (a
                caller's mistake: `reschedule`, `unsend` and `hold` do the rest).
        """
        check_finish(status)
        with self._tx() as c:
            parameters = _owned(
                message.key,
                owner,
                status=status,
                reason=reason,
                provider_id=provider_id,
                sent_at=now if status == MessageStatus.SENT else None,
                channel=channel.value if channel else None,
                now=now,
            )
            if c.execute(_FINISH, parameters).rowcount != 1:
                return False
            if attempt_outcome is not None:
                self._close_attempt(c, message.key, now, attempt_outcome, error, provider_id)
            entry = record(
                message,
                now,
                status,
                reason,
                channel=channel.value if channel else None,
                language=language,
            )
            self._later(c, _INSERT_AUDIT, audit_row(entry))
            return True

    def finish_sent(self, sends: Sequence[Sent], owner: str) -> set[str]:
        """Mark accepted sends "sent", with their audit rows; the keys this claimer still held.

        On PostgreSQL one statement finds and locks the rows still held, and
        one executemany updates them: two round trips for a batch instead of
        one per message. SQLite updates one row at a time (no round trips),
        each update saying whether the row was still held.
        """
        parameters = {
            sent.message.key: _owned(
                sent.message.key,
                owner,
                status=MessageStatus.SENT,
                reason=sent.reason,
                provider_id=sent.provider_id,
                sent_at=sent.at,
                channel=sent.channel.value,
                now=sent.at,
            )
            for sent in sends
        }
        held: set[str] = set()
        with self._tx() as c:
            if self.dialect == "postgresql":
                for chunk in chunks(sorted(parameters), 500):
                    query = select(_MESSAGES.c.key).where(
                        _MESSAGES.c.key.in_(chunk),
                        _MESSAGES.c.lease_owner == owner,
                        _MESSAGES.c.status.in_(IN_FLIGHT),
                    )
                    held.update(
                        c.execute(locking_in_key_order(query, _MESSAGES.c.key, self.dialect))
                        .scalars()
                        .all()
                    )
                if held:
                    # Locked above: each of these updates moves its row.
                    c.execute(_FINISH, [parameters[key] for key in parameters if key in held])
            else:
                held = {key for key, p in parameters.items() if c.execute(_FINISH, p).rowcount == 1}
            for sent in sends:
                key = sent.message.key
                if key not in held:
                    continue
                self._close_attempt(c, key, sent.at, "sent", None, sent.provider_id)
                entry = record(
                    sent.message,
                    sent.at,
                    MessageStatus.SENT,
                    sent.reason,
                    channel=sent.channel.value,
                    language=sent.language,
                )
                self._later(c, _INSERT_AUDIT, audit_row(entry))
        return held

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        """A send that did not happen: back from "sending" to "claimed", lease kept.

        Used when a channel refused the message (the next channel may take
        it) and when a provider confirms an interrupted send never arrived.
        """
        with self._tx() as c:
            moved = c.execute(_UNSEND, _owned(key, owner, now=now)).rowcount == 1
            if moved:
                self._close_attempt(c, key, now, outcome, error, None)
            return moved

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        """Keep a message in its in-flight status, under this claimer's lease until `until`."""
        with self._tx() as c:
            held = c.execute(_HOLD, _owned(key, owner, until=until, reason=reason))
            return held.rowcount == 1

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
            parameters = _owned(message.key, owner, reason=reason, due_at=due_at, now=now)
            if c.execute(_RESCHEDULE, parameters).rowcount != 1:
                return False
            if attempt_outcome is not None:
                self._close_attempt(c, message.key, now, attempt_outcome, error, None)
            entry = record(message, now, MessageStatus.SCHEDULED, reason)
            self._later(c, _INSERT_AUDIT, audit_row(entry) | {"due_at": due_at})
            return True

    def _close_attempt(
        self,
        c: Connection,
        key: str,
        now: datetime,
        outcome: str,
        error: str | None,
        provider_id: str | None,
    ) -> None:
        self._later(
            c,
            _CLOSE_ATTEMPT,
            {
                "attempt_key": key,
                "finished_at": now,
                "outcome": outcome,
                "error": error,
                "provider_id": provider_id,
            },
        )

    # -- what the dispatcher reads ----------------------------------------------

    def sending_facts(self, messages: Sequence[ScheduledMessage], since: datetime) -> SendingFacts:
        """What dispatching `messages` needs to read, in one transaction.

        The patients, the consent and the sends since `since` of every
        recipient, and the journeys the messages belong to.
        """
        patient_ids = sorted({m.recipient.patient_id for m in messages})
        wanted = {(m.recipient.patient_id, m.flow_id, m.flow_version) for m in messages}
        flow_ids = sorted({m.flow_id for m in messages})
        facts = SendingFacts({}, {}, {}, {})
        table = ScheduledMessageRow
        with self._read() as c:
            for ids in chunks(patient_ids, 500):
                for pid, snapshot in c.execute(
                    select(PatientRow.id, PatientRow.snapshot).where(PatientRow.id.in_(ids))
                ):
                    try:
                        facts.patients[pid] = codec.loads(Patient, snapshot)
                    except (ValidationError, ValueError, RecursionError) as exc:
                        facts.unreadable_patients[pid] = f"decode:patient:{exc.__class__.__name__}"
                for pid, recipient, ch, granted, at, source in c.execute(
                    select(
                        ConsentRow.patient_id,
                        ConsentRow.recipient,
                        ConsentRow.channel,
                        ConsentRow.granted,
                        ConsentRow.at,
                        ConsentRow.source,
                    ).where(ConsentRow.patient_id.in_(ids))
                ):
                    channel = Channel(ch)
                    facts.consent.setdefault((pid, recipient), {})[channel] = ConsentRecord(
                        channel, granted, at, source
                    )
                for pid, recipient, via, sent_at in c.execute(
                    select(table.patient_id, table.recipient, table.channel, table.sent_at).where(
                        table.patient_id.in_(ids), table.sent_at >= since
                    )
                ):
                    if via is not None and sent_at is not None:
                        by_channel = facts.sent.setdefault((pid, recipient), {})
                        by_channel.setdefault(Channel(via), []).append(sent_at)
                for pid, flow_id, version, state in c.execute(
                    select(
                        JourneyRow.patient_id,
                        JourneyRow.flow_id,
                        JourneyRow.flow_version,
                        JourneyRow.state,
                    ).where(JourneyRow.patient_id.in_(ids), JourneyRow.flow_id.in_(flow_ids))
                ):
                    # Only the journeys the messages belong to: decoding one is not free.
                    if (pid, flow_id, version) not in wanted:
                        continue
                    try:
                        facts.journeys[(pid, flow_id, version)] = codec.loads(Journey, state)
                    except (ValidationError, ValueError, RecursionError) as exc:
                        reason = f"decode:journey:{exc.__class__.__name__}"
                        facts.unreadable_journeys[(pid, flow_id, version)] = reason
        return facts

    def patient(self, patient_id: str) -> Patient | None:
        with self._read() as c:
            snapshot = c.execute(
                select(PatientRow.snapshot).where(PatientRow.id == patient_id)
            ).scalar_one_or_none()
        return codec.loads(Patient, snapshot) if snapshot else None

    def consent(self, patient_id: str, recipient: str) -> dict[Channel, ConsentRecord]:
        with self._read() as c:
            rows = c.execute(
                select(
                    ConsentRow.channel, ConsentRow.granted, ConsentRow.at, ConsentRow.source
                ).where(ConsentRow.patient_id == patient_id, ConsentRow.recipient == recipient)
            )
            return {
                Channel(ch): ConsentRecord(Channel(ch), granted, at, source)
                for ch, granted, at, source in rows
            }

    def journey(self, patient_id: str, flow_id: str, version: int) -> Journey | None:
        with self._read() as c:
            state = c.execute(
                select(JourneyRow.state).where(
                    JourneyRow.patient_id == patient_id,
                    JourneyRow.flow_id == flow_id,
                    JourneyRow.flow_version == version,
                )
            ).scalar_one_or_none()
        return codec.loads(Journey, state) if state else None

    def patient_journeys(self, patient_id: str) -> list[tuple[int, Journey]]:
        """Every journey of the patient, settled episodes included."""
        with self._read() as c:
            rows = c.execute(
                select(
                    JourneyRow.patient_id,
                    JourneyRow.flow_id,
                    JourneyRow.flow_version,
                    JourneyRow.state,
                )
                .where(JourneyRow.patient_id == patient_id)
                .order_by(JourneyRow.flow_id, JourneyRow.flow_version)
            ).all()
            return _whole(rows, _settled(c, EpisodeRow.patient_id == patient_id))

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]:
        """Every journey on `flow_id`, any version, settled episodes included (the funnel)."""
        with self._read() as c:
            rows = c.execute(
                select(
                    JourneyRow.patient_id,
                    JourneyRow.flow_id,
                    JourneyRow.flow_version,
                    JourneyRow.state,
                )
                .where(JourneyRow.flow_id == flow_id)
                .order_by(JourneyRow.patient_id, JourneyRow.flow_version)
            ).all()
            return _whole(rows, _settled(c, EpisodeRow.flow_id == flow_id))

    def flow_totals(self) -> dict[str, dict[str, int]]:
        """Per flow: episodes, and audit decisions by status (the dashboard's flow list)."""
        totals: dict[str, dict[str, int]] = {}
        with self._read() as c:
            for flow_id, count in c.execute(
                select(EpisodeRow.flow_id, func.count()).group_by(EpisodeRow.flow_id)
            ):
                totals.setdefault(flow_id, {})["episodes"] = int(count)
            for flow_id, status, count in c.execute(
                select(
                    AuditRow.flow_id, AuditRow.status, func.count(func.distinct(AuditRow.key))
                ).group_by(AuditRow.flow_id, AuditRow.status)
            ):
                totals.setdefault(flow_id, {})[status] = int(count)
        return totals

    def processed_events(self, patient_ids: Sequence[str]) -> list[tuple[str, str, str, datetime]]:
        """(event id, patient id, type, occurred at) of these patients' processed events."""
        table = ProcessedEventRow
        found: list[tuple[str, str, str, datetime]] = []
        with self._read() as c:
            for chunk in chunks(list(dict.fromkeys(patient_ids)), 500):
                rows = c.execute(
                    select(table.event_id, table.patient_id, table.type, table.occurred_at).where(
                        table.patient_id.in_(chunk)
                    )
                )
                found += [(r[0], r[1], r[2], r[3]) for r in rows]
        return found

    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        flow_event_types: frozenset[EventType] | None = None,
    ) -> Iterator[Event]:
        """The processed events that occurred in [since, until), in fold order, read in chunks."""
        return read_history(self._read, since, until, flow_event_types)

    # -- sandbox outbox ---------------------------------------------------------

    def outbox_add(self, entry: OutboxEntry) -> int:
        with self._tx() as c:
            result = c.execute(
                _INSERT_OUTBOX,
                {
                    "key": entry.key,
                    "channel": entry.channel,
                    "to_address": entry.to,
                    "subject": entry.subject,
                    "body": entry.body,
                    "html": entry.html,
                    "sent_at": entry.sent_at,
                },
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def outbox_find(self, key: str, channel: str) -> int | None:
        with self._read() as c:
            return c.execute(
                select(func.min(OutboxRow.id)).where(
                    OutboxRow.key == key, OutboxRow.channel == channel
                )
            ).scalar()

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        with self._read() as c:
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
        with self._read() as c:
            return [record_from_row(r) for r in c.execute(query).all()]

    def audit_after(self, position: int) -> tuple[list[DecisionRecord], int]:
        """The audit rows written after `position`, in order, and the position of the last.

        Start from 0; pass the returned position next time to read only what is new.
        """
        query = select(AuditRow).where(AuditRow.id > position).order_by(AuditRow.id)
        with self._read() as c:
            rows = c.execute(query).all()
        return [record_from_row(r) for r in rows], (rows[-1].id if rows else position)

    def message_statuses(self) -> dict[str, int]:
        """How many scheduled messages are in each status."""
        table = ScheduledMessageRow
        with self._read() as c:
            rows = c.execute(select(table.status, func.count()).group_by(table.status))
            return {status: int(count) for status, count in rows}

    def messages(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        table = ScheduledMessageRow
        query = select(table).order_by(table.created_at, table.key)
        if patient_id:
            query = query.where(table.patient_id == patient_id)
        with self._read() as c:
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
        with self._read() as c:
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
                WebhookReceiptRow,
                InboundMessageRow,
                ImportRow,
                TestSendRow,
            ):
                c.execute(delete(table))


# The Core tables behind the row classes: statements on them skip the ORM's
# bulk-persistence path, which costs more than the database on the dispatch path.
# What text columns cannot keep: NUL (PostgreSQL) and lone surrogates (no UTF-8).
_MESSAGES = cast(Table, ScheduledMessageRow.__table__)
_ATTEMPTS = cast(Table, DeliveryAttemptRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
_OUTBOX = cast(Table, OutboxRow.__table__)
_INSERT_ATTEMPT = insert(_ATTEMPTS)
_INSERT_AUDIT = insert(_AUDIT)
_INSERT_OUTBOX = insert(_OUTBOX)

# The dispatch path's updates, built once: each touches a message only while its
# claimer holds it (`m_key`, `m_owner`), and a lost claim updates nothing.
_HELD = and_(_MESSAGES.c.key == bindparam("m_key"), _MESSAGES.c.lease_owner == bindparam("m_owner"))
# `or_`, not `in_`: an IN list is an expanding parameter, rendered into the SQL
# again at every execution of these per-message statements.
_IN_FLIGHT = or_(*(_MESSAGES.c.status == status for status in IN_FLIGHT))
# What `finish` may record of a message its claimer holds: a move allowed from every
# in-flight status, as `_FINISH` checks only that the message is in flight.
_BEGIN_SENDS = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.key.in_(bindparam("m_keys", expanding=True)),
        _MESSAGES.c.lease_owner == bindparam("m_owner"),
        _MESSAGES.c.status.in_(sources(MessageStatus.SENDING)),
    )
    .values(
        status=MessageStatus.SENDING,
        attempts=_MESSAGES.c.attempts + 1,
        channel=bindparam("m_channel"),
        lease_until=func.coalesce(bindparam("m_until", type_=Stamp()), _MESSAGES.c.lease_until),
        updated_at=bindparam("m_now"),
    )
    .returning(_MESSAGES.c.key, _MESSAGES.c.attempts)
)
# The heartbeat: only the rows this claimer still holds, still in flight, are renewed.
_RENEW = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.key.in_(bindparam("m_keys", expanding=True)),
        _MESSAGES.c.lease_owner == bindparam("m_owner"),
        _IN_FLIGHT,
    )
    .values(lease_until=bindparam("m_until"))
    .returning(_MESSAGES.c.key)
)
_FINISH = (
    update(_MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(
        status=bindparam("m_status"),
        reason=bindparam("m_reason"),
        provider_id=bindparam("m_provider_id"),
        sent_at=bindparam("m_sent_at"),
        channel=func.coalesce(bindparam("m_channel", type_=String()), _MESSAGES.c.channel),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
)
_RESCHEDULE = (
    update(_MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(
        status=MessageStatus.SCHEDULED,
        reason=bindparam("m_reason"),
        due_at=bindparam("m_due_at"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
)
_UNSEND = (
    update(_MESSAGES)
    .where(_HELD, _MESSAGES.c.status == MessageStatus.SENDING)
    .values(status=MessageStatus.CLAIMED, updated_at=bindparam("m_now"))
)
_HOLD = (
    update(_MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(lease_until=bindparam("m_until"), reason=bindparam("m_reason"))
)


def _owned(key: str, owner: str, **values: object) -> dict[str, object]:
    """Parameters for the dispatch-path updates: the held message, then its new values."""
    return {
        "m_key": key,
        "m_owner": owner,
        **{f"m_{name}": value for name, value in values.items()},
    }


# A message has at most one attempt pending: the one its claimer began.
_CLOSE_ATTEMPT = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.key == bindparam("attempt_key"), _ATTEMPTS.c.outcome == "pending")
    .values(
        finished_at=bindparam("finished_at"),
        outcome=bindparam("outcome"),
        error=bindparam("error"),
        provider_id=bindparam("provider_id"),
    )
)


def _settled(c: Connection, where: Any) -> dict[tuple[str, str, int], list[Episode]]:
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


def _whole(
    rows: Sequence[Any], settled: dict[tuple[str, str, int], list[Episode]]
) -> list[tuple[int, Journey]]:
    return [
        (version, codec.loads(Journey, state).with_settled(settled.get((pid, fid, version), ())))
        for pid, fid, version, state in rows
    ]


def _translated(exc: SQLAlchemyError, what: str) -> StoreError:
    """The driver's error as ours: a refused value apart from a store that failed."""
    if isinstance(exc, DataError):
        return UnstorableError(f"{what}: a value the store refuses ({exc.__class__.__name__})")
    return StoreError(f"{what}: {exc.__class__.__name__}")


_FAIL_HELD = (
    update(_MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(
        status=MessageStatus.FAILED,
        reason=bindparam("m_reason"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
)
_AUDIT_FROM_ROW = insert(_AUDIT).from_select(
    [
        "at",
        "patient_id",
        "flow_id",
        "flow_version",
        "episode_id",
        "stage_id",
        "message_id",
        "key",
        "recipient",
        "channel",
        "template",
        "due_at",
        "status",
        "reason",
    ],
    select(
        bindparam("a_now", type_=_AUDIT.c.at.type),
        _MESSAGES.c.patient_id,
        _MESSAGES.c.flow_id,
        _MESSAGES.c.flow_version,
        _MESSAGES.c.episode_id,
        _MESSAGES.c.stage_id,
        _MESSAGES.c.message_id,
        _MESSAGES.c.key,
        _MESSAGES.c.recipient,
        _MESSAGES.c.channel,
        # The template is in the payload, which is what could not be read.
        literal("", String()),
        _MESSAGES.c.due_at,
        _MESSAGES.c.status,
        _MESSAGES.c.reason,
    ).where(_MESSAGES.c.key == bindparam("a_key")),
)


def _fail_held(c: Connection, key: str, owner: str, now: datetime, reason: str) -> bool:
    """`SqlStore.fail_held` inside a transaction already open."""
    if c.execute(_FAIL_HELD, _owned(key, owner, reason=reason, now=now)).rowcount != 1:
        return False
    c.execute(
        _CLOSE_ATTEMPT,
        {
            "attempt_key": key,
            "finished_at": now,
            "outcome": "failed",
            "error": reason,
            "provider_id": None,
        },
    )
    c.execute(_AUDIT_FROM_ROW, {"a_now": now, "a_key": key})
    return True


def _case_sending(status: Any) -> Any:
    return case((status == MessageStatus.SENDING, MessageStatus.SENDING), else_=None)
