"""What providers report back about sent messages: delivery states and who a message was for.

Delivery callbacks do not hold the dispatcher's lease, so these updates are
guarded by the status they move from instead: a status only moves forward
(sending -> sent -> delivered or failed, as `message_status` draws it), and
a late or repeated callback updates nothing. Each move that happens writes its audit row in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import String, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..decisions import record
from ..errors import StoreError
from ..event import Patient
from ..journey import ScheduledMessage
from ..limits import unsafe_text
from ..message_status import MessageStatus, allowed
from ..ports import Addressee as Recipient
from ..ports import DeliveryReports
from . import codec
from .rows import audit_row, chunks
from .tables import (
    AuditRow,
    DeliveryAttemptRow,
    PatientRow,
    ScheduledMessageRow,
    WebhookReceiptRow,
)
from .transactions import Transactions

__all__ = [
    "KEY_LENGTH",
    "PROVIDER_ID_LENGTH",
    "RECEIPT_ID_LENGTH",
    "DeliveryLedger",
    "Recipient",
    "unstorable",
]

# What the columns a callback is looked up by hold: a longer value names nothing
# stored, and PostgreSQL refuses to write one.
KEY_LENGTH = cast(String, ScheduledMessageRow.__table__.c.key.type).length or 0
PROVIDER_ID_LENGTH = cast(String, ScheduledMessageRow.__table__.c.provider_id.type).length or 0
RECEIPT_ID_LENGTH = cast(String, WebhookReceiptRow.__table__.c.event_id.type).length or 0


def unstorable(value: str, limit: int) -> str | None:
    """Why the store could not look up or keep `value`; None when it can.

    PostgreSQL refuses a NUL in text; no driver can encode a lone surrogate
    (what a JSON `\\ud800` escape gives); a column holds `limit` characters.
    """
    if len(value) > limit:
        return f"over {limit} characters"
    return unsafe_text(value)


class DeliveryLedger:
    """Provider feedback on the store's scheduled messages, in transactions of its own."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def settle_sent(self, key: str, provider_id: str | None, now: datetime, reason: str) -> bool:
        """A message whose send outcome was unknown ("sending"): the provider has it.

        Returns whether it moved (False when it was not "sending").
        """
        table = ScheduledMessageRow
        with self.transactions.write() as c:
            moved = c.execute(
                update(table)
                .where(table.key == key, table.status == MessageStatus.SENDING)
                .values(
                    status=MessageStatus.SENT,
                    reason=reason,
                    provider_id=provider_id,
                    sent_at=now,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
                .returning(table.payload, table.channel)
            ).one_or_none()
            if moved is None:
                return False
            payload, channel = moved
            attempts = DeliveryAttemptRow
            c.execute(
                update(attempts)
                .where(attempts.key == key, attempts.outcome == "pending")
                .values(finished_at=now, outcome="sent", provider_id=provider_id)
            )
            message = codec.loads(ScheduledMessage, payload)
            c.execute(
                insert(AuditRow),
                audit_row(record(message, now, MessageStatus.SENT, reason, channel=channel)),
            )
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

        Returns whether it moved: a message already delivered or failed stays as it is.

        Raises:
            ValueError: `status` is not where provider feedback moves a sent message.
        """
        if not allowed(MessageStatus.SENT, status):
            raise ValueError(f"advance: provider feedback cannot move a sent message to {status!r}")
        if key is None and provider_id is None:
            return False
        table = ScheduledMessageRow
        which = table.key == key if key is not None else table.provider_id == provider_id
        with self.transactions.write() as c:
            moved = c.execute(
                update(table)
                .where(which, table.status == MessageStatus.SENT)
                .values(status=status, reason=reason, updated_at=now)
                .returning(table.payload, table.channel)
            ).all()
            for payload, channel in moved:
                message = codec.loads(ScheduledMessage, payload)
                entry = record(message, now, status, reason, channel=channel)
                c.execute(insert(AuditRow), audit_row(entry))
            return bool(moved)

    def engaged(
        self, kind: str, now: datetime, *, key: str | None = None, provider_id: str | None = None
    ) -> bool:
        """An open or a click: audited as `delivered` with reason `engagement:<kind>`.

        An engagement implies delivery, so a message still "sent" moves to delivered first.
        """
        if key is None and provider_id is None:
            return False
        self.advance(MessageStatus.DELIVERED, None, now, key=key, provider_id=provider_id)
        table = ScheduledMessageRow
        which = table.key == key if key is not None else table.provider_id == provider_id
        with self.transactions.write() as c:
            rows = c.execute(
                select(table.payload, table.channel).where(
                    which, table.status == MessageStatus.DELIVERED
                )
            ).all()
            for payload, channel in rows:
                message = codec.loads(ScheduledMessage, payload)
                entry = record(
                    message, now, MessageStatus.DELIVERED, f"engagement:{kind}", channel=channel
                )
                c.execute(insert(AuditRow), audit_row(entry))
            return bool(rows)

    def status(self, key: str) -> str | None:
        table = ScheduledMessageRow
        with self.transactions.read() as c:
            found: str | None = c.execute(
                select(table.status).where(table.key == key)
            ).scalar_one_or_none()
            return found

    def recipient_of(self, key: str) -> Recipient | None:
        """The patient (as last known) and recipient a scheduled message is for."""
        table = ScheduledMessageRow
        with self.transactions.read() as c:
            row = c.execute(
                select(PatientRow.snapshot, table.recipient)
                .join(PatientRow, PatientRow.id == table.patient_id)
                .where(table.key == key)
            ).one_or_none()
        if row is None:
            return None
        return Recipient(codec.loads(Patient, row[0]), row[1])

    def recipients_by_phone(self, phone: str) -> list[Recipient]:
        """Every patient or caregiver whose phone is `phone` (E.164).

        A text search narrows the snapshots; the decoded patient confirms
        each match. Without a contact-point index this reads every snapshot
        holding the number, which is what one inbound SMS may cost.
        """
        needle = f'%"{phone}"%'
        with self.transactions.read() as c:
            snapshots = c.execute(
                select(PatientRow.snapshot).where(PatientRow.snapshot.like(needle))
            ).scalars()
            patients = [codec.loads(Patient, s) for s in snapshots]
        return [found for patient in patients for found in Recipient.holding(patient, phone)]

    def received(self, source: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these webhook event ids were recorded before."""
        table = WebhookReceiptRow
        found: set[str] = set()
        with self.transactions.read() as c:
            for chunk in chunks(list(dict.fromkeys(event_ids)), 500):
                found.update(
                    c.execute(
                        select(table.event_id).where(
                            table.source == source, table.event_id.in_(chunk)
                        )
                    ).scalars()
                )
        return found

    def first_receipt(self, source: str, event_ids: Sequence[str], now: datetime) -> set[str]:
        """Record webhook event ids; returns those not seen before (the rest are duplicates)."""
        fresh: set[str] = set()
        table = WebhookReceiptRow
        for event_id in dict.fromkeys(event_ids):
            try:
                with self.transactions.write() as c:
                    seen = c.execute(
                        select(table.event_id).where(
                            table.source == source, table.event_id == event_id
                        )
                    ).first()
                    if seen is None:
                        c.execute(
                            insert(table).values(source=source, event_id=event_id, received_at=now)
                        )
                        fresh.add(event_id)
            except StoreError as exc:
                # Two deliveries of one batch racing: the other one recorded it.
                if isinstance(exc.__cause__, IntegrityError):
                    continue
                raise
        return fresh


if TYPE_CHECKING:

    def _implements(ledger: DeliveryLedger) -> DeliveryReports:
        """The port this ledger implements, checked by mypy."""
        return ledger
