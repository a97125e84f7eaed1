"""The in-memory store: the ports over plain dicts, under one lock.

It keeps the SQL store's semantics, not its tables: an event id is processed
once; a batch of events commits whole or not at all; a message's status moves
only from the statuses each write names (a cancel takes only a pending
message, a claimer writes only while it holds the lease); claims take lapsed
leases first, then due messages by due time; every decision that takes leaves
an audit row. The real processor and dispatcher run on it (the tests, and
what rehearses them on a virtual clock). It imports no SQLAlchemy, and nothing of it outlives the process.

A transaction keeps an undo log, not a snapshot (`memory_journal`): each
write records what it replaced, an error inside `unit` or `together` plays
the log backwards, and a commit drops it; a transaction costs what it
writes, whatever the store holds, which is what lets `simulate` run on it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .decisions import DecisionRecord, record
from .errors import StoreError
from .event import Channel, Event, EventType, Patient
from .journey import Episode, Journey, ScheduledMessage
from .limits import storable_text
from .memory_unit import AttemptRow, MemoryUnit, MessageRow, Tables, append_audit, close_attempt
from .message_status import IN_FLIGHT, MessageStatus, allowed, check_finish
from .policies import ConsentRecord
from .policies.pacing import Ask, Pace, Taken, take_all
from .ports import (
    REJECTED_BODY_LIMIT,
    Addressee,
    ArchivedMessage,
    Claim,
    DeliveryReports,
    EpisodeView,
    EventStore,
    Final,
    FlowVersions,
    ImportHold,
    InboundArchive,
    MessageLedger,
    MessageView,
    Outbox,
    OutboxEntry,
    RecordedTestSend,
    RecordedTestSends,
    RejectedInput,
    SendBuckets,
    SendingFacts,
    Sent,
    Settlement,
)

__all__ = ["MemoryStore", "MemoryUnit"]


class MemoryStore:
    """The store's ports in memory: `MemoryStore()` is an empty store."""

    def __init__(self) -> None:
        self._t = Tables()
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def _transaction(self) -> Iterator[Tables]:
        """One thread at a time; the outermost block undoes everything on an error."""
        with self._lock:
            outermost = self._depth == 0
            journal = self._t.journal
            if outermost:
                journal.open()
            self._depth += 1
            try:
                yield self._t
            except BaseException:
                if outermost:
                    journal.rollback()
                raise
            else:
                if outermost:
                    journal.commit()
            finally:
                self._depth -= 1

    # -- journeys: the unit of work ----------------------------------------------

    @contextmanager
    def unit(self, now: datetime, hold: ImportHold | None = None) -> Iterator[MemoryUnit]:
        """One transaction for a batch of events; written when the block ends without error."""
        with self._transaction():
            work = MemoryUnit(self._t, now, hold)
            yield work
            work.flush()

    # -- rejected input and flow versions ------------------------------------------

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        self.reject_many(source, [(body, reason)], now)

    def reject_many(self, source: str, refused: Sequence[tuple[bytes, str]], now: datetime) -> None:
        with self._transaction() as t:
            for body, reason in refused:
                t.rejected.append(
                    {
                        "id": len(t.rejected) + 1,
                        "received_at": now,
                        "source": source,
                        "reason": storable_text(reason),
                        "body": body[:REJECTED_BODY_LIMIT],
                        "truncated": len(body) > REJECTED_BODY_LIMIT,
                    }
                )

    def rejected(self, limit: int = 100) -> list[RejectedInput]:
        with self._lock:
            return [RejectedInput(**r) for r in reversed(self._t.rejected)][:limit]

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
                    if m.status in IN_FLIGHT and m.lease_until is not None and m.lease_until < now
                ),
            )
            due = sorted(
                (m.due_at, key)
                for key, m in t.messages.items()
                if m.status == MessageStatus.SCHEDULED and m.due_at <= now
            )
            for _, key in [*abandoned, *due][:limit]:
                row = t.messages[key]
                claims.append(
                    Claim(
                        row.message, row.status, row.attempts, row.due_at, row.channel, row.reason
                    )
                )
                t.messages[key] = replace(
                    row,
                    # A message caught mid-send stays MessageStatus.SENDING: its outcome is unknown.
                    status=MessageStatus.SENDING
                    if row.status == MessageStatus.SENDING
                    else MessageStatus.CLAIMED,
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
                if row is None or row.lease_owner != owner or row.status != MessageStatus.CLAIMED:
                    continue
                row = replace(
                    row,
                    status=MessageStatus.SENDING,
                    attempts=row.attempts + 1,
                    channel=channel.value,
                    lease_until=lease_until or row.lease_until,
                    updated_at=now,
                )
                t.messages[key] = row
                attempts[key] = row.attempts
                t.open_attempts[key] = len(t.attempts)
                t.attempts.append(AttemptRow(key, row.attempts, channel.value, now))
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
        status: MessageStatus,
        reason: str | None,
        *,
        channel: Channel | None = None,
        language: str | None = None,
        provider_id: str | None = None,
        attempt_outcome: str | None = None,
        error: str | None = None,
    ) -> bool:
        check_finish(status)
        with self._transaction() as t:
            row = self._held(t, message.key, owner)
            if row is None:
                return False
            t.messages[message.key] = replace(
                row,
                status=status,
                reason=reason,
                provider_id=provider_id,
                sent_at=now if status == MessageStatus.SENT else None,
                channel=channel.value if channel else row.channel,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if attempt_outcome is not None:
                close_attempt(t, message.key, now, attempt_outcome, error, provider_id)
            append_audit(
                t,
                record(
                    message,
                    now,
                    status,
                    reason,
                    channel=channel.value if channel else None,
                    language=language,
                ),
            )
            return True

    def finish_all(self, finals: Sequence[Final], owner: str, now: datetime) -> set[str]:
        held: set[str] = set()
        with self._transaction():  # one transaction, as the SQL store's
            for final in finals:
                if final.message.key not in held and self.finish(
                    final.message, owner, now, final.status, final.reason
                ):
                    held.add(final.message.key)
        return held

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
                    status=MessageStatus.SENT,
                    reason=sent.reason,
                    provider_id=sent.provider_id,
                    sent_at=sent.at,
                    channel=sent.channel.value,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=sent.at,
                )
                close_attempt(t, key, sent.at, MessageStatus.SENT, None, sent.provider_id)
                append_audit(
                    t,
                    record(
                        sent.message,
                        sent.at,
                        MessageStatus.SENT,
                        sent.reason,
                        channel=sent.channel.value,
                        language=sent.language,
                    ),
                )
        return held

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        with self._transaction() as t:
            row = t.messages.get(key)
            if row is None or row.lease_owner != owner or row.status != MessageStatus.SENDING:
                return False
            t.messages[key] = replace(row, status=MessageStatus.CLAIMED, updated_at=now)
            close_attempt(t, key, now, outcome, error, None)
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
        audit: bool = True,
    ) -> bool:
        with self._transaction() as t:
            row = self._held(t, message.key, owner)
            if row is None:
                return False
            t.messages[message.key] = replace(
                row,
                status=MessageStatus.SCHEDULED,
                reason=reason,
                due_at=due_at,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            if attempt_outcome is not None:
                close_attempt(t, message.key, now, attempt_outcome, error, None)
            if audit:
                append_audit(
                    t,
                    replace(record(message, now, MessageStatus.SCHEDULED, reason), due_at=due_at),
                )
            return True

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        with self._transaction() as t:
            row = self._held(t, key, owner)
            if row is None:
                return False
            row = replace(
                row,
                status=MessageStatus.FAILED,
                reason=reason,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            t.messages[key] = row
            close_attempt(t, key, now, MessageStatus.FAILED, reason, None)
            # As the SQL store copies it from the row's columns: no template, no language.
            audited = record(row.message, now, MessageStatus.FAILED, reason, channel=row.channel)
            append_audit(t, replace(audited, template="", due_at=row.due_at))
            return True

    @staticmethod
    def _held(t: Tables, key: str, owner: str) -> MessageRow | None:
        row = t.messages.get(key)
        if row is None or row.lease_owner != owner or row.status not in IN_FLIGHT:
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

    # -- test sends (`RecordedTestSends`) --------------------------------------------

    def record_test_send(self, send: RecordedTestSend) -> int:
        with self._transaction() as t:
            t.test_sends.append(replace(send, id=len(t.test_sends) + 1))
            return len(t.test_sends)

    def test_sends(self, limit: int = 100) -> list[RecordedTestSend]:
        with self._lock:
            return list(reversed(self._t.test_sends))[:limit]

    # -- provider feedback (`DeliveryReports`) ---------------------------------------

    def settle_sent(self, key: str, provider_id: str | None, now: datetime, reason: str) -> bool:
        """A message whose send outcome was unknown ("sending"): the provider has it."""
        with self._transaction() as t:
            row = t.messages.get(key)
            if row is None or row.status != MessageStatus.SENDING:
                return False
            t.messages[key] = replace(
                row,
                status=MessageStatus.SENT,
                reason=reason,
                provider_id=provider_id,
                sent_at=now,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            close_attempt(t, key, now, MessageStatus.SENT, None, provider_id)
            entry = record(row.message, now, MessageStatus.SENT, reason, channel=row.channel)
            append_audit(t, entry)
            return True

    def advance(
        self,
        status: MessageStatus,
        reason: str | None,
        now: datetime,
        *,
        key: str | None = None,
        provider_id: str | None = None,
    ) -> bool:
        """Move a sent message (by key, else by provider id) to delivered or failed.

        Raises:
            ValueError: `status` is not where provider feedback moves a sent message.
        """
        if not allowed(MessageStatus.SENT, status):
            raise ValueError(f"advance: provider feedback cannot move a sent message to {status!r}")
        with self._transaction() as t:
            moved = False
            for found, row in self._reported(t, key, provider_id):
                if row.status != MessageStatus.SENT:
                    continue
                t.messages[found] = replace(row, status=status, reason=reason, updated_at=now)
                append_audit(t, record(row.message, now, status, reason, channel=row.channel))
                moved = True
            return moved

    def engaged(
        self, kind: str, now: datetime, *, key: str | None = None, provider_id: str | None = None
    ) -> bool:
        """An open or a click: audited as `delivered` with reason `engagement:<kind>`."""
        with self._transaction() as t:
            self.advance(MessageStatus.DELIVERED, None, now, key=key, provider_id=provider_id)
            engaged = False
            for _, row in self._reported(t, key, provider_id):
                if row.status != MessageStatus.DELIVERED:
                    continue
                reason = f"engagement:{kind}"
                entry = record(
                    row.message, now, MessageStatus.DELIVERED, reason, channel=row.channel
                )
                append_audit(t, entry)
                engaged = True
            return engaged

    @staticmethod
    def _reported(
        t: Tables, key: str | None, provider_id: str | None
    ) -> list[tuple[str, MessageRow]]:
        """The messages a report names: by key, else by provider id."""
        if key is not None:
            row = t.messages.get(key)
            return [] if row is None else [(key, row)]
        if provider_id is None:
            return []
        return [(k, r) for k, r in t.messages.items() if r.provider_id == provider_id]

    def status(self, key: str) -> str | None:
        with self._lock:
            row = self._t.messages.get(key)
        return None if row is None else row.status

    def recipient_of(self, key: str) -> Addressee | None:
        """The patient (as last known) and recipient a scheduled message is for."""
        with self._lock:
            row = self._t.messages.get(key)
            known = self._t.patients.get(row.message.recipient.patient_id) if row else None
        if row is None or known is None:
            return None
        return Addressee(known.patient, str(row.message.recipient))

    def recipients_by_phone(self, phone: str) -> list[Addressee]:
        """Every patient or caregiver whose phone is `phone` (E.164)."""
        with self._lock:
            patients = [known.patient for known in self._t.patients.values()]
        return [found for patient in patients for found in Addressee.holding(patient, phone)]

    def received(self, source: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these webhook event ids were recorded before."""
        with self._lock:
            return {e for e in event_ids if (source, e) in self._t.receipts}

    def first_receipt(self, source: str, event_ids: Sequence[str], now: datetime) -> set[str]:
        """Record webhook event ids; returns those not seen before (the rest are duplicates)."""
        fresh: set[str] = set()
        with self._transaction() as t:
            for event_id in dict.fromkeys(event_ids):
                if (source, event_id) not in t.receipts:
                    t.receipts[(source, event_id)] = now
                    fresh.add(event_id)
        return fresh

    # -- the inbound archive (`InboundArchive`) --------------------------------------

    def keep(self, protocol: str, bodies: Sequence[bytes], now: datetime) -> list[int]:
        """Keep raw messages as `received`; their ids, in order."""
        with self._transaction() as t:
            ids: list[int] = []
            for body in bodies:
                ids.append(len(t.inbound) + 1)
                t.inbound.append(
                    {
                        "id": ids[-1],
                        "received_at": now,
                        "protocol": protocol,
                        "body": body,
                        "status": "received",
                        "event_id": None,
                        "reason": None,
                    }
                )
            return ids

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record each message's outcome; a message is settled once."""
        with self._transaction() as t:
            for s in settlements:
                i = s.id - 1
                if not 0 <= i < len(t.inbound) or t.inbound[i]["status"] != "received":
                    continue
                reason = None if s.reason is None else storable_text(s.reason)
                t.inbound[i] = t.inbound[i] | {
                    "status": s.status,
                    "event_id": s.event_id,
                    "reason": reason,
                }

    def pending(self, protocol_prefix: str, limit: int) -> list[ArchivedMessage]:
        """The oldest messages still `received` whose protocol starts with the prefix."""
        with self._lock:
            return [
                ArchivedMessage(m["id"], m["protocol"], m["body"])
                for m in self._t.inbound
                if m["status"] == "received" and m["protocol"].startswith(protocol_prefix)
            ][:limit]

    def inbound_messages(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest archived messages, optionally of one status."""
        with self._lock:
            found = [
                dict(m) for m in reversed(self._t.inbound) if not status or m["status"] == status
            ]
        return found[:limit]

    # -- a driver on a virtual clock ----------------------------------------------------

    def next_due(self) -> datetime | None:
        """When the earliest scheduled message falls due; None when none waits."""
        with self._lock:
            return min(
                (
                    m.due_at
                    for m in self._t.messages.values()
                    if m.status == MessageStatus.SCHEDULED
                ),
                default=None,
            )

    def audit_after(self, position: int) -> tuple[list[DecisionRecord], int]:
        """The audit rows written after `position`, in order, and the position of the last.

        Start from 0; pass the returned position next time to read only what is new.
        """
        with self._lock:
            found = list(self._t.audit[position:])
        return found, position + len(found)

    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        flow_event_types: frozenset[EventType] | None = None,
    ) -> Iterator[Event]:
        """The processed events that occurred in [since, until), in fold order.

        The events are in memory already: this copies references, not events.
        """
        with self._lock:
            found = [
                row.event
                for row in self._t.processed.values()
                if since <= row.occurred_at
                and (until is None or row.occurred_at < until)
                and (flow_event_types is None or row.event.type in flow_event_types)
            ]
        return iter(sorted(found, key=Event.sort_key))

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
        """Every journey of the patient, settled episodes included."""
        return self._whole(lambda key: key[0] == patient_id)

    def flow_journeys(self, flow_id: str) -> list[tuple[int, Journey]]:
        """Every journey on `flow_id`, any version, settled episodes included (the funnel)."""
        return self._whole(lambda key: key[1] == flow_id)

    def _whole(self, wanted: Callable[[tuple[str, str, int]], bool]) -> list[tuple[int, Journey]]:
        with self._lock:
            settled: dict[tuple[str, str, int], list[Episode]] = {}
            for row in self._t.episodes.values():
                key = (row["patient_id"], row["flow"], row["flow_version"])
                if "settled" in row and wanted(key):
                    settled.setdefault(key, []).append(row["settled"])
            found = sorted((k, j) for k, j in self._t.journeys.items() if wanted(k))
        return [(k[2], j.with_settled(settled.get(k, ()))) for k, j in found]

    def episodes(self, patient_id: str) -> list[EpisodeView]:
        with self._lock:
            rows = [dict(e) for e in self._t.episodes.values() if e["patient_id"] == patient_id]
        rows.sort(key=lambda e: e["started_at"])
        for row in rows:
            del row["patient_id"]
            row.pop("settled", None)
        return [EpisodeView(**row) for row in rows]

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

    def messages(self, *, patient_id: str | None = None) -> list[MessageView]:
        with self._lock:
            rows = [
                (r.created_at, key, r)
                for key, r in self._t.messages.items()
                if not patient_id or r.message.recipient.patient_id == patient_id
            ]
        rows.sort(key=lambda row: (row[0], row[1]))
        return [
            MessageView(
                key=key,
                flow=r.message.flow_id,
                flow_version=r.message.flow_version,
                episode=r.message.episode_id,
                stage=r.message.stage_id,
                message=r.message.message_id,
                recipient=str(r.message.recipient),
                status=r.status,
                reason=r.reason,
                due_at=r.due_at,
                channel=r.channel,
                attempts=r.attempts,
                sent_at=r.sent_at,
            )
            for _, key, r in rows
        ]

    # -- the senders' token buckets -----------------------------------------------

    def take_tokens(
        self,
        sender: str,
        channel: Channel,
        pace: Pace,
        sends: Sequence[Ask],
        now: datetime,
    ) -> list[Taken]:
        with self._transaction() as t:
            bucket, ready = take_all(t.buckets.get((sender, channel.value)), pace, sends, now)
            if bucket is not None:
                t.buckets[(sender, channel.value)] = bucket
        return ready

    def purge(self) -> None:
        with self._lock:
            if self._depth:
                raise StoreError("purge inside a transaction: it could not be undone")
            self._t = Tables()


if TYPE_CHECKING:

    def _implements(
        store: MemoryStore,
    ) -> tuple[
        EventStore,
        MessageLedger,
        Outbox,
        FlowVersions,
        DeliveryReports,
        InboundArchive,
        RecordedTestSends,
        SendBuckets,
    ]:
        """The ports this store implements, checked by mypy."""
        return store, store, store, store, store, store, store, store
