"""The in-memory store's tables, and its unit of work: one batch of events, written together.

`MemoryStore` (`orchestrator.memory_store`) owns the tables and the lock; a
`MemoryUnit` reads them at once and writes what it collected when its batch
commits, with the SQL unit's rules for scheduled messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .decisions import DecisionRecord, record
from .errors import StoreError
from .event import Event
from .journey import Episode, Journey, ScheduledMessage
from .limits import storable_text
from .memory_journal import Journal, JournaledDict, JournaledList
from .message_status import PENDING, MessageStatus
from .patient_merge import KnownPatient
from .policies import ConsentRecord
from .policies.pacing import PACED, Bucket
from .ports import ImportHold, OutboxEntry, RecordedTestSend
from .visit_facts import VisitFacts

__all__ = [
    "ERROR_LENGTH",
    "REASON_LENGTH",
    "AttemptRow",
    "MemoryUnit",
    "MessageRow",
    "ProcessedRow",
    "Tables",
    "append_audit",
    "close_attempt",
    "kept_reason",
    "new_row",
]

# What the SQL store's `Reason` columns keep of a reason (audit, messages) and of
# an attempt's error: the rest is cut, as `store.tables.Reason` cuts it.
REASON_LENGTH = 200
ERROR_LENGTH = 300


@dataclass(frozen=True, slots=True)
class MessageRow:
    message: ScheduledMessage
    status: MessageStatus
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

    def __post_init__(self) -> None:
        if self.reason is not None:
            object.__setattr__(self, "reason", kept_reason(self.reason))


@dataclass(frozen=True, slots=True)
class AttemptRow:
    key: str
    attempt: int
    channel: str
    started_at: datetime
    outcome: str = "pending"
    finished_at: datetime | None = None
    error: str | None = None
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessedRow:
    event_id: str
    type: str
    source: str
    patient_id: str
    occurred_at: datetime
    received_at: datetime
    # The event itself: the SQL store's `body`, kept as the value it reads back as.
    event: Event


class Tables:
    """Everything the store holds, in containers whose writes its journal can undo."""

    def __init__(self) -> None:
        self.journal = Journal()
        j = self.journal
        self.messages: JournaledDict[str, MessageRow] = JournaledDict(j)
        self.attempts: JournaledList[AttemptRow] = JournaledList(j)
        # Where each message's pending attempt sits in `attempts` (it has at most one).
        self.open_attempts: JournaledDict[str, int] = JournaledDict(j)
        self.audit: JournaledList[DecisionRecord] = JournaledList(j)
        self.patients: JournaledDict[str, KnownPatient] = JournaledDict(j)
        self.consent: JournaledDict[tuple[str, str, str], ConsentRecord] = JournaledDict(j)
        self.journeys: JournaledDict[tuple[str, str, int], Journey] = JournaledDict(j)
        self.episodes: JournaledDict[str, dict[str, Any]] = JournaledDict(j)
        self.processed: JournaledDict[str, ProcessedRow] = JournaledDict(j)
        self.rejected: JournaledList[dict[str, Any]] = JournaledList(j)
        self.outbox: JournaledList[OutboxEntry] = JournaledList(j)
        self.test_sends: JournaledList[RecordedTestSend] = JournaledList(j)
        self.flow_versions: JournaledDict[tuple[str, int], tuple[str, str]] = JournaledDict(j)
        # Webhook event ids seen, per source: (source, event id) -> when first received.
        self.receipts: JournaledDict[tuple[str, str], datetime] = JournaledDict(j)
        # The inbound archive's raw messages; a message's id is its place here, from 1.
        self.inbound: JournaledList[dict[str, Any]] = JournaledList(j)
        # Each sender's token bucket per channel: (sender, channel) -> bucket.
        self.buckets: JournaledDict[tuple[str, str], Bucket] = JournaledDict(j)

    def state(self) -> dict[str, Any]:
        """Every table as plain containers (a copy of the containers, not of their rows)."""
        return {
            name: list(value) if isinstance(value, list) else dict(value)
            for name, value in vars(self).items()
            if name != "journal"
        }


@dataclass
class MemoryUnit:
    """What one batch of events reads and writes; written by `flush` when the batch commits."""

    tables: Tables
    now: datetime
    hold: ImportHold | None = None
    unreadable: dict[str, str] = field(default_factory=dict)
    _patients: dict[str, KnownPatient] = field(default_factory=dict)
    _consents: dict[tuple[str, str, str], ConsentRecord] = field(default_factory=dict)
    _journeys: dict[tuple[str, str, int], Journey] = field(default_factory=dict)
    _settled: list[tuple[str, str, int, Episode]] = field(default_factory=list)
    _processed: list[ProcessedRow] = field(default_factory=list)
    # What the engine decided about messages, in order: (kind, message, reason, event id).
    _decisions: list[tuple[str, ScheduledMessage, str | None, str]] = field(default_factory=list)

    @property
    def _t(self) -> Tables:
        return self.tables

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

    def save_settled(
        self, patient_id: str, flow_id: str, version: int, episodes: Sequence[Episode]
    ) -> None:
        self._settled += [(patient_id, flow_id, version, e) for e in episodes]

    # The memory store computes its figures from the journeys (`insight.reading`),
    # at the sizes it serves: it keeps no stage visits and so needs no event times.

    def event_times(self, patient_ids: Iterable[str]) -> list[tuple[str, str, str, datetime]]:
        return []

    def save_visits(self, episode_ids: Sequence[str], visits: Sequence[VisitFacts]) -> None:
        return None

    def note_intake_requests(self, keys: Iterable[str]) -> None:
        return None

    def mark_processed(self, event: Event) -> None:
        self._processed.append(
            ProcessedRow(
                event.id,
                event.type.value,
                event.source,
                event.patient.id,
                event.occurred_at,
                self.now,
                event,
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
                t.episodes[episode.id] = _episode_row(patient_id, flow_id, version, episode)
        for patient_id, flow_id, version, episode in self._settled:
            row = _episode_row(patient_id, flow_id, version, episode)
            t.episodes[episode.id] = {**row, "settled": episode}
        for processed in self._processed:
            if processed.event_id in t.processed:
                raise StoreError(f"event {processed.event_id} is processed already")
            t.processed[processed.event_id] = processed
        self._write_messages(t)

    def _write_messages(self, t: Tables) -> None:
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
            taken: MessageStatus | None = None
            if kind == "schedule" and row is None:
                t.messages[key] = new_row(message, MessageStatus.SCHEDULED, None, self.now)
                taken = MessageStatus.SCHEDULED
                inserted.add(key)
                touched.append(key)
            elif kind == "schedule" and row is not None and row.status in PENDING:
                if key in inserted:
                    # Inserted by this batch: the newer decision replaces it whole.
                    t.messages[key] = new_row(message, MessageStatus.SCHEDULED, None, self.now)
                else:
                    t.messages[key] = replace(row, message=message, updated_at=self.now)
                touched.append(key)
            elif kind == "cancel" and row is not None and row.status in PENDING:
                assert reason is not None
                t.messages[key] = replace(
                    row,
                    status=MessageStatus.CANCELLED,
                    reason=reason,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=self.now,
                )
                taken = MessageStatus.CANCELLED
            elif kind == "expire" and row is None:
                t.messages[key] = new_row(message, MessageStatus.EXPIRED, reason, self.now)
                inserted.add(key)
                taken = MessageStatus.EXPIRED
            if taken is not None:
                append_audit(t, record(message, self.now, taken, reason, event_id=event_id))
        if self.hold is not None:
            self._hold(t, touched)

    def _hold(self, t: Tables, keys: list[str]) -> None:
        """Hold what this unit scheduled or updated until its import closes."""
        assert self.hold is not None
        for key in dict.fromkeys(keys):
            row = t.messages[key]
            if row.status != MessageStatus.SCHEDULED:
                continue
            moved = row.due_at < self.hold.until
            t.messages[key] = replace(
                row,
                import_id=self.hold.import_id,
                due_at=max(row.due_at, self.hold.until),
                # Moved, a pacing hold's place is gone: it comes back as a new send.
                reason=None if moved and row.reason == PACED else row.reason,
                updated_at=self.now,
            )


def kept_reason(reason: str) -> str:
    """A reason as the SQL store's `Reason(200)` column keeps it."""
    return storable_text(reason)[:REASON_LENGTH]


def append_audit(t: Tables, entry: DecisionRecord) -> None:
    """Append an audit row, its reason kept as the SQL audit table keeps it."""
    if entry.reason is not None and (kept := kept_reason(entry.reason)) != entry.reason:
        entry = replace(entry, reason=kept)
    t.audit.append(entry)


def new_row(
    message: ScheduledMessage, status: MessageStatus, reason: str | None, now: datetime
) -> MessageRow:
    return MessageRow(message, status, reason, message.due_at, now, now)


def close_attempt(
    t: Tables, key: str, now: datetime, outcome: str, error: str | None, provider_id: str | None
) -> None:
    """Close the message's pending attempt (a message has at most one: its claimer's)."""
    i = t.open_attempts.get(key)
    if i is None:
        return
    del t.open_attempts[key]
    t.attempts[i] = replace(
        t.attempts[i],
        finished_at=now,
        outcome=outcome,
        error=storable_text(error)[:ERROR_LENGTH] if error is not None else None,
        provider_id=provider_id,
    )


def _episode_row(patient_id: str, flow_id: str, version: int, episode: Episode) -> dict[str, Any]:
    return {
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
