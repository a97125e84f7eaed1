"""The in-memory store: the ports over plain dicts, under one lock.

It keeps the SQL store's semantics, not its tables: an event id is processed
once; a batch of events commits whole or not at all; a message's status moves
only from the statuses each write names (a cancel takes only a pending
message, a claimer writes only while it holds the lease); claims take lapsed
leases first, then due messages by due time; every decision that takes leaves
an audit row. `simulate` and the tests run the real processor and dispatcher
on it. It imports no SQLAlchemy, and nothing of it outlives the process.

Rows are frozen values replaced on each write, so a transaction's snapshot
is a shallow copy of the containers, and an error inside `unit` or `together`
puts the snapshot back.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .decisions import DecisionRecord, record
from .errors import StoreError
from .event import Channel, Event, Patient
from .journey import Journey, ScheduledMessage
from .patient_merge import KnownPatient
from .policies import ConsentRecord
from .ports import (
    REJECTED_BODY_LIMIT,
    Claim,
    EventStore,
    FlowVersions,
    ImportHold,
    MessageLedger,
    Outbox,
    OutboxEntry,
    SendingFacts,
    Sent,
)

__all__ = ["MemoryStore", "MemoryUnit"]

# The scheduled-message statuses as the SQL store names them.
_PENDING = ("scheduled", "claimed")
_IN_FLIGHT = ("claimed", "sending")
# What the SQL store's text columns cannot keep, replaced the same way here.
_KEEPABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class _Message:
    message: ScheduledMessage
    status: str
    reason: str | None
    due_at: datetime
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    channel: str | None = None
    provider_id: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    sent_at: datetime | None = None
    import_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Attempt:
    key: str
    attempt: int
    channel: str
    started_at: datetime
    outcome: str = "pending"
    finished_at: datetime | None = None
    error: str | None = None
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Processed:
    event_id: str
    type: str
    source: str
    patient_id: str
    occurred_at: datetime
    received_at: datetime


@dataclass
class _Tables:
    """Everything the store holds; each container is copied whole for a snapshot."""

    messages: dict[str, _Message] = field(default_factory=dict)
    attempts: list[_Attempt] = field(default_factory=list)
    audit: list[DecisionRecord] = field(default_factory=list)
    patients: dict[str, KnownPatient] = field(default_factory=dict)
    consent: dict[tuple[str, str, str], ConsentRecord] = field(default_factory=dict)
    journeys: dict[tuple[str, str, int], Journey] = field(default_factory=dict)
    episodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    processed: dict[str, _Processed] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[OutboxEntry] = field(default_factory=list)
    flow_versions: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(
            dict(self.messages),
            list(self.attempts),
            list(self.audit),
            dict(self.patients),
            dict(self.consent),
            dict(self.journeys),
            dict(self.episodes),
            dict(self.processed),
            list(self.rejected),
            list(self.outbox),
            dict(self.flow_versions),
        )


class MemoryStore:
    """The store's ports in memory: `MemoryStore()` is an empty store."""

    def __init__(self) -> None:
        self._t = _Tables()
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def _transaction(self) -> Iterator[_Tables]:
        """One thread at a time; the outermost block puts everything back on an error."""
        with self._lock:
            snapshot = self._t.copy() if self._depth == 0 else None
            self._depth += 1
            try:
                yield self._t
            except BaseException:
                if snapshot is not None:
                    self._t = snapshot
                raise
            finally:
                self._depth -= 1

    # -- journeys: the unit of work ----------------------------------------------

    @contextmanager
    def unit(self, now: datetime, hold: ImportHold | None = None) -> Iterator[MemoryUnit]:
        """One transaction for a batch of events; written when the block ends without error."""
        with self._transaction():
            work = MemoryUnit(self, now, hold)
            yield work
            work.flush()

    # -- rejected input and flow versions ------------------------------------------

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        with self._transaction() as t:
            t.rejected.append(
                {
                    "id": len(t.rejected) + 1,
                    "received_at": now,
                    "source": source,
                    "reason": _KEEPABLE.sub("\ufffd", reason),
                    "body": body[:REJECTED_BODY_LIMIT],
                    "truncated": len(body) > REJECTED_BODY_LIMIT,
                }
            )

    def rejected(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in reversed(self._t.rejected)][:limit]

    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        with self._lock:
            return dict(self._t.flow_versions)

    def record_flow_version(self, flow_id: str, version: int, source: str, now: datetime) -> None:
        digest = hashlib.sha256(source.encode()).hexdigest()
        with self._transaction() as t:
            if (flow_id, version) in t.flow_versions:
                raise StoreError(f"flow {flow_id} v{version} is recorded already")
            t.flow_versions[(flow_id, version)] = (digest, source)

    # -- the message ledger -------------------------------------------------------

    @contextmanager
    def holding_connection(self) -> Iterator[None]:
        yield

    @contextmanager
    def together(self) -> Iterator[None]:
        with self._transaction():
            yield

    def lock_messages(self, keys: Iterable[str]) -> None:
        """Nothing to do: `together` holds the one lock."""

    def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[Claim]:
        claims: list[Claim] = []
        with self._transaction() as t:
            abandoned = sorted(
                (
                    (m.lease_until, key)
                    for key, m in t.messages.items()
                    if m.status in _IN_FLIGHT and m.lease_until is not None and m.lease_until < now
                ),
            )
            due = sorted(
                (m.due_at, key)
                for key, m in t.messages.items()
                if m.status == "scheduled" and m.due_at <= now
            )
            for _, key in [*abandoned, *due][:limit]:
                row = t.messages[key]
                claims.append(Claim(row.message, row.status, row.attempts, row.due_at, row.channel))
                t.messages[key] = replace(
                    row,
                    # A message caught mid-send stays "sending": its outcome is unknown.
                    status="sending" if row.status == "sending" else "claimed",
                    lease_owner=owner,
                    lease_until=lease_until,
                    updated_at=now,
                )
        return claims

    def sending_facts(self, messages: Sequence[ScheduledMessage], since: datetime) -> SendingFacts:
        patient_ids = {m.recipient.patient_id for m in messages}
        wanted = {(m.recipient.patient_id, m.flow_id, m.flow_version) for m in messages}
        facts = SendingFacts({}, {}, {}, {})
        with self._lock:
            t = self._t
            for pid in patient_ids:
                if pid in t.patients:
                    facts.patients[pid] = t.patients[pid].patient
            for (pid, recipient, _), consent in t.consent.items():
                if pid in patient_ids:
                    facts.consent.setdefault((pid, recipient), {})[consent.channel] = consent
            for row in t.messages.values():
                pid = row.message.recipient.patient_id
                if pid not in patient_ids or row.sent_at is None or row.sent_at < since:
                    continue
                if row.channel is not None:
                    who = (pid, str(row.message.recipient))
                    facts.sent.setdefault(who, {}).setdefault(Channel(row.channel), []).append(
                        row.sent_at
                    )
            for key in wanted:
                if key in t.journeys:
                    facts.journeys[key] = t.journeys[key]
        return facts

    def begin_send(self, key: str, owner: str, channel: Channel, now: datetime) -> int | None:
        return self.begin_sends({key: channel}, owner, now).get(key)

    def begin_sends(
        self,
        channels: Mapping[str, Channel],
        owner: str,
        now: datetime,
        lease_until: datetime | None = None,
    ) -> dict[str, int]:
        attempts: dict[str, int] = {}
        with self._transaction() as t:
            for key, channel in channels.items():
                row = t.messages.get(key)
                if row is None or row.lease_owner != owner or row.status != "claimed":
                    continue
                row = replace(
                    row,
                    status="sending",
                    attempts=row.attempts + 1,
                    channel=channel.value,
                    lease_until=lease_until or row.lease_until,
                    updated_at=now,
                )
                t.messages[key] = row
                attempts[key] = row.attempts
                t.attempts.append(_Attempt(key, row.attempts, channel.value, now))
        return attempts

    def renew(self, keys: Iterable[str], owner: str, until: datetime) -> set[str]:
        held: set[str] = set()
        with self._transaction() as t:
            for key in set(keys):
                row = self._held(t, key, owner)
                if row is not None:
                    t.messages[key] = replace(row, lease_until=until)
                    held.add(key)
        return held

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
        with self._transaction() as t:
            row = self._held(t, message.key, owner)
            if row is None:
                return False
            t.messages[message.key] = replace(
                row,
                status=status,
                reason=reason,
                provider_id=provider_id,
                sent_at=now if status == "sent" else None,
                channel=channel.value if channel else row.channel,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if attempt_outcome is not None:
                _close_attempt(t, message.key, now, attempt_outcome, error, provider_id)
            t.audit.append(
                record(
                    message,
                    now,
                    status,
                    reason,
                    channel=channel.value if channel else None,
                    language=language,
                )
            )
            return True

    def finish_sent(self, sends: Sequence[Sent], owner: str) -> set[str]:
        held: set[str] = set()
        with self._transaction() as t:
            for sent in sends:
                key = sent.message.key
                row = self._held(t, key, owner)
                if row is None:
                    continue
                held.add(key)
                t.messages[key] = replace(
                    row,
                    status="sent",
                    reason=sent.reason,
                    provider_id=sent.provider_id,
                    sent_at=sent.at,
                    channel=sent.channel.value,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=sent.at,
                )
                _close_attempt(t, key, sent.at, "sent", None, sent.provider_id)
                t.audit.append(
                    record(
                        sent.message,
                        sent.at,
                        "sent",
                        sent.reason,
                        channel=sent.channel.value,
                        language=sent.language,
                    )
                )
        return held

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        with self._transaction() as t:
            row = t.messages.get(key)
            if row is None or row.lease_owner != owner or row.status != "sending":
                return False
            t.messages[key] = replace(row, status="claimed", updated_at=now)
            _close_attempt(t, key, now, outcome, error, None)
            return True

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        with self._transaction() as t:
            row = self._held(t, key, owner)
            if row is None:
                return False
            t.messages[key] = replace(row, lease_until=until, reason=reason)
            return True

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
        with self._transaction() as t:
            row = self._held(t, message.key, owner)
            if row is None:
                return False
            t.messages[message.key] = replace(
                row,
                status="scheduled",
                reason=reason,
                due_at=due_at,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if attempt_outcome is not None:
                _close_attempt(t, message.key, now, attempt_outcome, error, None)
            t.audit.append(replace(record(message, now, "scheduled", reason), due_at=due_at))
            return True

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        with self._transaction() as t:
            row = self._held(t, key, owner)
            if row is None:
                return False
            row = replace(
                row,
                status="failed",
                reason=reason,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            t.messages[key] = row
            _close_attempt(t, key, now, "failed", reason, None)
            # As the SQL store copies it from the row's columns: no template, no language.
            audited = record(row.message, now, "failed", reason, channel=row.channel)
            t.audit.append(replace(audited, template="", due_at=row.due_at))
            return True

    @staticmethod
    def _held(t: _Tables, key: str, owner: str) -> _Message | None:
        row = t.messages.get(key)
        if row is None or row.lease_owner != owner or row.status not in _IN_FLIGHT:
            return None
        return row

    # -- the sandbox outbox ---------------------------------------------------------

    def outbox_add(self, entry: OutboxEntry) -> int:
        with self._transaction() as t:
            t.outbox.append(entry)
            return len(t.outbox)

    def outbox_find(self, key: str, channel: str) -> int | None:
        with self._lock:
            return next(
                (
                    i
                    for i, e in enumerate(self._t.outbox, start=1)
                    if e.key == key and e.channel == channel
                ),
                None,
            )

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        with self._lock:
            return list(reversed(self._t.outbox))[:limit]

    # -- reads: what the SQL store's readers offer ---------------------------------

    def patient(self, patient_id: str) -> Patient | None:
        with self._lock:
            known = self._t.patients.get(patient_id)
        return known.patient if known else None

    def consent(self, patient_id: str, recipient: str) -> dict[Channel, ConsentRecord]:
        with self._lock:
            return {
                c.channel: c
                for (pid, who, _), c in self._t.consent.items()
                if (pid, who) == (patient_id, recipient)
            }

    def journey(self, patient_id: str, flow_id: str, version: int) -> Journey | None:
        with self._lock:
            return self._t.journeys.get((patient_id, flow_id, version))

    def patient_journeys(self, patient_id: str) -> list[tuple[int, Journey]]:
        with self._lock:
            found = sorted((k, j) for k, j in self._t.journeys.items() if k[0] == patient_id)
        return [(version, journey) for (_, _, version), journey in found]

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]:
        with self._lock:
            found = sorted(
                ((pid, version), j)
                for (pid, fid, version), j in self._t.journeys.items()
                if fid == flow_id
            )
        return [(version, journey) for (_, version), journey in found]

    def episodes(self, patient_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = [dict(e) for e in self._t.episodes.values() if e["patient_id"] == patient_id]
        rows.sort(key=lambda e: e["started_at"])
        for row in rows:
            del row["patient_id"]
        return rows

    def audit(
        self,
        *,
        flow: str | None = None,
        since: datetime | None = None,
        patient_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        with self._lock:
            found = [
                a
                for a in self._t.audit
                if (not flow or a.flow == flow)
                and (not since or a.at >= since)
                and (not patient_id or a.patient_id == patient_id)
                and (not status or a.status == status)
            ]
        return found[:limit] if limit else found

    def message_statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for row in self._t.messages.values():
                counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def messages(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = [
                (r.created_at, key, r)
                for key, r in self._t.messages.items()
                if not patient_id or r.message.recipient.patient_id == patient_id
            ]
        rows.sort(key=lambda row: (row[0], row[1]))
        return [
            {
                "key": key,
                "flow": r.message.flow_id,
                "flow_version": r.message.flow_version,
                "episode": r.message.episode_id,
                "stage": r.message.stage_id,
                "message": r.message.message_id,
                "recipient": str(r.message.recipient),
                "status": r.status,
                "reason": r.reason,
                "due_at": r.due_at,
                "channel": r.channel,
                "attempts": r.attempts,
                "sent_at": r.sent_at,
            }
            for _, key, r in rows
        ]

    def purge(self) -> None:
        with self._transaction():
            self._t = _Tables()


def _close_attempt(
    t: _Tables, key: str, now: datetime, outcome: str, error: str | None, provider_id: str | None
) -> None:
    """Close the message's pending attempt (a message has at most one: its claimer's)."""
    for i, attempt in enumerate(t.attempts):
        if attempt.key == key and attempt.outcome == "pending":
            t.attempts[i] = replace(
                attempt, finished_at=now, outcome=outcome, error=error, provider_id=provider_id
            )


@dataclass
class MemoryUnit:
    """What one batch of events reads and writes; written by `flush` when the batch commits."""

    store: MemoryStore
    now: datetime
    hold: ImportHold | None = None
    unreadable: dict[str, str] = field(default_factory=dict)
    _patients: dict[str, KnownPatient] = field(default_factory=dict)
    _consents: dict[tuple[str, str, str], ConsentRecord] = field(default_factory=dict)
    _journeys: dict[tuple[str, str, int], Journey] = field(default_factory=dict)
    _processed: list[_Processed] = field(default_factory=list)
    # What the engine decided about messages, in order: (kind, message, reason, event id).
    _decisions: list[tuple[str, ScheduledMessage, str | None, str]] = field(default_factory=list)

    @property
    def _t(self) -> _Tables:
        return self.store._t

    # -- reads ----------------------------------------------------------------

    def lock_patients(self, patient_ids: Iterable[str]) -> None:
        """Nothing to do: the unit holds the store's one lock."""

    def processed(self, event_ids: Iterable[str]) -> set[str]:
        return {e for e in event_ids if e in self._t.processed}

    def journeys(self, patient_ids: Iterable[str]) -> dict[tuple[str, str, int], Journey]:
        ids = set(patient_ids)
        return {k: j for k, j in self._t.journeys.items() if k[0] in ids}

    def known_patients(self, patient_ids: Iterable[str]) -> dict[str, KnownPatient]:
        return {pid: self._t.patients[pid] for pid in set(patient_ids) if pid in self._t.patients}

    def consent_times(self, patient_id: str) -> dict[tuple[str, str], datetime]:
        return {
            (recipient, channel): c.at
            for (pid, recipient, channel), c in self._t.consent.items()
            if pid == patient_id
        }

    # -- writes (collected) ---------------------------------------------------

    def save_patient(self, known: KnownPatient) -> None:
        self._patients[known.patient.id] = known

    def save_consent(self, patient_id: str, recipient: str, record: ConsentRecord) -> None:
        key = (patient_id, recipient, record.channel.value)
        earlier = self._consents.get(key)
        if earlier is not None and earlier.at > record.at:
            return  # the batch already holds a later decision
        self._consents[key] = record

    def save_journey(self, journey: Journey, version: int) -> None:
        self._journeys[(journey.patient_id, journey.flow_id, version)] = journey

    def mark_processed(self, event: Event) -> None:
        self._processed.append(
            _Processed(
                event.id,
                event.type.value,
                event.source,
                event.patient.id,
                event.occurred_at,
                self.now,
            )
        )

    def schedule(self, message: ScheduledMessage, event_id: str) -> None:
        self._decisions.append(("schedule", message, None, event_id))

    def cancel(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        self._decisions.append(("cancel", message, reason, event_id))

    def expire(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        self._decisions.append(("expire", message, reason, event_id))

    # -- flush ------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything collected (the store's lock is held: nothing moved meanwhile)."""
        t = self._t
        t.patients.update(self._patients)
        t.consent.update(self._consents)
        for (patient_id, flow_id, version), journey in self._journeys.items():
            t.journeys[(patient_id, flow_id, version)] = journey
            for episode in journey.episodes:
                t.episodes[episode.id] = {
                    "id": episode.id,
                    "patient_id": patient_id,
                    "flow": flow_id,
                    "flow_version": version,
                    "stage": episode.stage_id,
                    "status": episode.status.value,
                    "outcome": episode.outcome,
                    "started_at": episode.started_at,
                    "ended_at": episode.ended_at,
                }
        for processed in self._processed:
            if processed.event_id in t.processed:
                raise StoreError(f"event {processed.event_id} is processed already")
            t.processed[processed.event_id] = processed
        self._write_messages(t)

    def _write_messages(self, t: _Tables) -> None:
        """Apply the message decisions as the SQL unit does, auditing only what took.

        A schedule inserts a new message or updates a pending one (its due
        time and any deferral stay); a cancel takes a pending message only;
        an expiry records a new message as expired. A decision about a
        message already final changes nothing and is not audited.
        """
        touched: list[str] = []
        inserted: set[str] = set()
        for kind, message, reason, event_id in self._decisions:
            key = message.key
            row = t.messages.get(key)
            taken: str | None = None
            if kind == "schedule" and row is None:
                t.messages[key] = _new_row(message, "scheduled", None, self.now)
                taken = "scheduled"
                inserted.add(key)
                touched.append(key)
            elif kind == "schedule" and row is not None and row.status in _PENDING:
                if key in inserted:
                    # Inserted by this batch: the newer decision replaces it whole.
                    t.messages[key] = _new_row(message, "scheduled", None, self.now)
                else:
                    t.messages[key] = replace(row, message=message, updated_at=self.now)
                touched.append(key)
            elif kind == "cancel" and row is not None and row.status in _PENDING:
                assert reason is not None
                t.messages[key] = replace(
                    row,
                    status="cancelled",
                    reason=reason,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=self.now,
                )
                taken = "cancelled"
            elif kind == "expire" and row is None:
                t.messages[key] = _new_row(message, "expired", reason, self.now)
                inserted.add(key)
                taken = "expired"
            if taken is not None:
                t.audit.append(record(message, self.now, taken, reason, event_id=event_id))
        if self.hold is not None:
            self._hold(t, touched)

    def _hold(self, t: _Tables, keys: list[str]) -> None:
        """Hold what this unit scheduled or updated until its import closes."""
        assert self.hold is not None
        for key in dict.fromkeys(keys):
            row = t.messages[key]
            if row.status != "scheduled":
                continue
            t.messages[key] = replace(
                row,
                import_id=self.hold.import_id,
                due_at=max(row.due_at, self.hold.until),
                updated_at=self.now,
            )


def _new_row(message: ScheduledMessage, status: str, reason: str | None, now: datetime) -> _Message:
    return _Message(message, status, reason, message.due_at, now, now)


if TYPE_CHECKING:
    # The ports this store implements, checked by mypy.
    _PORTS: tuple[EventStore, MessageLedger, Outbox, FlowVersions] = (
        MemoryStore(),
        MemoryStore(),
        MemoryStore(),
        MemoryStore(),
    )
