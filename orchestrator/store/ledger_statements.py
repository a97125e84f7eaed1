"""The message ledger's statements: the dispatch path's updates, built once.

Each touches a message only while its claimer holds it and re-checks, in its
own `WHERE`, the status it moves from: a lost claim updates nothing. They run
on the Core tables behind the row classes, skipping the ORM's
bulk-persistence path, which costs more than the database on the dispatch path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    update,
)
from sqlalchemy.engine import Connection

from ..message_status import IN_FLIGHT, MessageStatus, sources
from .among import among
from .tables import AuditRow, DeliveryAttemptRow, ScheduledMessageRow, Stamp

__all__ = [
    "BEGIN_SENDS",
    "CLOSE_ATTEMPT",
    "FINISH",
    "FINISH_HELD",
    "HOLD",
    "INSERT_ATTEMPT",
    "INSERT_AUDIT",
    "MESSAGES",
    "RENEW",
    "RESCHEDULE",
    "UNSEND",
    "case_sending",
    "fail_held_on",
    "owned",
]

MESSAGES = cast(Table, ScheduledMessageRow.__table__)
_ATTEMPTS = cast(Table, DeliveryAttemptRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
INSERT_ATTEMPT = insert(_ATTEMPTS)
INSERT_AUDIT = insert(_AUDIT)

# The dispatch path's updates, built once: each touches a message only while its
# claimer holds it (`m_key`, `m_owner`), and a lost claim updates nothing.
_HELD = and_(MESSAGES.c.key == bindparam("m_key"), MESSAGES.c.lease_owner == bindparam("m_owner"))
# `or_`, not `in_`: an IN list is an expanding parameter, rendered into the SQL
# again at every execution of these per-message statements.
_IN_FLIGHT = or_(*(MESSAGES.c.status == status for status in IN_FLIGHT))
# What `finish` may record of a message its claimer holds: a move allowed from every
# in-flight status, as `FINISH` checks only that the message is in flight.
BEGIN_SENDS = (
    update(MESSAGES)
    .where(
        among(MESSAGES.c.key, "m_keys"),
        MESSAGES.c.lease_owner == bindparam("m_owner"),
        MESSAGES.c.status.in_(sources(MessageStatus.SENDING)),
    )
    .values(
        status=MessageStatus.SENDING,
        attempts=MESSAGES.c.attempts + 1,
        channel=bindparam("m_channel"),
        lease_until=func.coalesce(bindparam("m_until", type_=Stamp()), MESSAGES.c.lease_until),
        updated_at=bindparam("m_now"),
    )
    .returning(MESSAGES.c.key, MESSAGES.c.attempts)
)
# The heartbeat: only the rows this claimer still holds, still in flight, are renewed.
RENEW = (
    update(MESSAGES)
    .where(
        among(MESSAGES.c.key, "m_keys"),
        MESSAGES.c.lease_owner == bindparam("m_owner"),
        _IN_FLIGHT,
    )
    .values(lease_until=bindparam("m_until"))
    .returning(MESSAGES.c.key)
)
FINISH = (
    update(MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(
        status=bindparam("m_status"),
        reason=bindparam("m_reason"),
        provider_id=bindparam("m_provider_id"),
        sent_at=bindparam("m_sent_at"),
        channel=func.coalesce(bindparam("m_channel", type_=String()), MESSAGES.c.channel),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
)
# `FINISH` for many held messages at once, all to one status and reason, with no
# send: the keys it moved are the ones their claimer still held.
FINISH_HELD = (
    update(MESSAGES)
    .where(
        among(MESSAGES.c.key, "m_keys"),
        MESSAGES.c.lease_owner == bindparam("m_owner"),
        _IN_FLIGHT,
    )
    .values(
        status=bindparam("m_status"),
        reason=bindparam("m_reason"),
        provider_id=None,
        sent_at=None,
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
    .returning(MESSAGES.c.key)
)
RESCHEDULE = (
    update(MESSAGES)
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
UNSEND = (
    update(MESSAGES)
    .where(_HELD, MESSAGES.c.status == MessageStatus.SENDING)
    .values(status=MessageStatus.CLAIMED, updated_at=bindparam("m_now"))
)
HOLD = (
    update(MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(lease_until=bindparam("m_until"), reason=bindparam("m_reason"))
)


def owned(key: str, owner: str, **values: object) -> dict[str, object]:
    """Parameters for the dispatch-path updates: the held message, then its new values."""
    return {
        "m_key": key,
        "m_owner": owner,
        **{f"m_{name}": value for name, value in values.items()},
    }


# A message has at most one attempt pending: the one its claimer began.
CLOSE_ATTEMPT = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.key == bindparam("attempt_key"), _ATTEMPTS.c.outcome == "pending")
    .values(
        finished_at=bindparam("finished_at"),
        outcome=bindparam("outcome"),
        error=bindparam("error"),
        provider_id=bindparam("provider_id"),
    )
)


_FAIL_HELD = (
    update(MESSAGES)
    .where(_HELD, _IN_FLIGHT)
    .values(
        status=MessageStatus.FAILED,
        reason=bindparam("m_reason"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("m_now"),
    )
    # What its audit row copies: the message's own columns, its payload unread.
    .returning(
        MESSAGES.c.patient_id,
        MESSAGES.c.flow_id,
        MESSAGES.c.flow_version,
        MESSAGES.c.episode_id,
        MESSAGES.c.stage_id,
        MESSAGES.c.message_id,
        MESSAGES.c.key,
        MESSAGES.c.recipient,
        MESSAGES.c.channel,
        MESSAGES.c.due_at,
        MESSAGES.c.status,
        MESSAGES.c.reason,
    )
)


def fail_held_on(
    c: Connection, key: str, owner: str, now: datetime, reason: str
) -> dict[str, Any] | None:
    """`SqlLedger.fail_held` inside a transaction already open, but for its audit row.

    Returns the audit row to write (None: this claimer no longer held the
    message). The caller writes it with the transaction's other audit rows, in
    one statement (`Transactions.defer`): the audit's tally trigger locks per
    statement, and two transactions each auditing as they go could deadlock.
    """
    failed = c.execute(_FAIL_HELD, owned(key, owner, reason=reason, now=now)).mappings().first()
    if failed is None:
        return None
    c.execute(
        CLOSE_ATTEMPT,
        {
            "attempt_key": key,
            "finished_at": now,
            "outcome": "failed",
            "error": reason,
            "provider_id": None,
        },
    )
    # The columns of `rows.audit_row`, so that it joins the other audit rows' statement.
    return {
        **failed,
        "at": now,
        "event_id": None,
        "language": None,
        # The template is in the payload, which is what could not be read.
        "template": "",
    }


def case_sending(status: Any) -> Any:
    return case((status == MessageStatus.SENDING, MessageStatus.SENDING), else_=None)
