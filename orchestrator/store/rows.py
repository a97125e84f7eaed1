"""Core values as table rows and back, and reading in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select

from ..decisions import DecisionRecord
from ..journey import ScheduledMessage
from ..message_status import MessageStatus
from ..ports import REJECTED_BODY_LIMIT
from ..visit_facts import VisitFacts
from . import codec

__all__ = [
    "REJECTED_BODY_LIMIT",
    "audit_row",
    "chunks",
    "locking_in_key_order",
    "message_row",
    "record_from_row",
    "visit_row",
]


def message_row(
    message: ScheduledMessage, status: MessageStatus, reason: str | None, now: datetime
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


def visit_row(visit: VisitFacts) -> dict[str, Any]:
    """A `stage_visits` row: the facts' fields are its columns."""
    return {f.name: getattr(visit, f.name) for f in fields(VisitFacts)}


def audit_row(entry: DecisionRecord) -> dict[str, Any]:
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


def record_from_row(row: Any) -> DecisionRecord:
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


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def locking_in_key_order(query: _Query, key: Any, dialect: str) -> _Query:
    """`query` locking the rows it reads, one after another in the byte order of `key`.

    Whoever locks several messages sorts their keys with `sorted` and locks
    them through this: one order for everyone, so no two transactions each
    hold a row the other waits for. Byte order ("C") is the order `sorted`
    gives; PostgreSQL only (SQLite has one writer at a time).
    """
    if dialect != "postgresql":
        return query
    return query.order_by(key.collate("C")).with_for_update()
