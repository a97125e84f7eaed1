"""The invariant checker: what a store must never hold, whatever crashed or raced.

Each `Invariant` is a name, what it promises, and a query for the message
keys that break it. `check_invariants` runs them all on one snapshot and returns an
`InvariantReport` with a count and a few example keys per broken invariant. The
stress and crash tests, the soak benchmark and `orchestrator audit check`
run it; a new rule is one more `Invariant` in `INVARIANTS` (or passed to
`check_invariants`). It reads the audit log, the messages, the delivery attempts and
the sandbox outbox, and decides nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Engine, Table, and_, func, select, union
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from ..errors import StoreError
from ..journey import ScheduledMessage
from ..message_status import FINAL, MessageStatus
from ..policies.staleness import DEFAULT_STALE_AFTER, stale_at
from . import codec
from .connection import READ_ONLY
from .sql import SqlStore
from .tables import AuditRow, DeliveryAttemptRow, OutboxRow, ScheduledMessageRow

__all__ = [
    "INVARIANTS",
    "Invariant",
    "InvariantReport",
    "Violation",
    "check_invariants",
    "sent_late",
    "standard_invariants",
]

# How many offending keys a violation names: enough to start looking.
_EXAMPLES = 5
# Final statuses after which nothing may be sent.
_NOT_SENT = (
    MessageStatus.CANCELLED,
    MessageStatus.SUPPRESSED,
    MessageStatus.EXPIRED,
    MessageStatus.FAILED,
)
# Final statuses that say a message never went ("failed" may follow a send:
# a delivery callback reports that the provider could not deliver it).
_NEVER_SENT = (MessageStatus.CANCELLED, MessageStatus.SUPPRESSED, MessageStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class Invariant:
    """A rule the store must keep: `offenders` returns the keys of the messages that break it.

    `offenders` gets one connection (one snapshot) and the instant before which
    every due message must have reached a final status; it may query, or read
    rows and decide in Python (a rule that needs the flows, say).
    """

    name: str
    promise: str
    offenders: Callable[[Connection, datetime], Iterable[str]]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: how many messages break it, and a few of their keys."""

    name: str
    promise: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InvariantReport:
    """What `check_invariants` found: the invariants it ran, and those that do not hold."""

    checked: tuple[str, ...]
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


def _keys(c: Connection, query: Any) -> Iterable[str]:
    return cast(Iterable[str], c.execute(query).scalars())


def _sent_after_final(c: Connection, _: datetime) -> Iterable[str]:
    # Audit ids, not times, order the rows: they are written in commit order,
    # and a virtual clock may stamp two rows with one time.
    sent, final = aliased(AuditRow), aliased(AuditRow)
    after = select(sent.key).join(
        final, and_(final.key == sent.key, final.id < sent.id, final.status.in_(_NOT_SENT))
    )
    # A final status that overwrote a send: the message says it never went, yet it did.
    table = ScheduledMessageRow
    overwritten = (
        select(table.key)
        .join(_OUTBOX, _OUTBOX.c.key == table.key)
        .where(table.status.in_(_NEVER_SENT))
    )
    return _keys(c, union(after.where(sent.status == MessageStatus.SENT), overwritten))


def _sent_twice(c: Connection, _: datetime) -> Iterable[str]:
    audited = (
        select(AuditRow.key)
        .where(AuditRow.status == MessageStatus.SENT)
        .group_by(AuditRow.key)
        .having(func.count() > 1)
    )
    attempts = (
        select(DeliveryAttemptRow.key)
        .where(DeliveryAttemptRow.outcome == "sent")
        .group_by(DeliveryAttemptRow.key)
        .having(func.count() > 1)
    )
    outbox = select(_OUTBOX.c.key).group_by(_OUTBOX.c.key).having(func.count() > 1)
    return _keys(c, union(audited, attempts, outbox))


def _unsettled(c: Connection, due_before: datetime) -> Iterable[str]:
    table = ScheduledMessageRow
    return _keys(c, select(table.key).where(table.due_at < due_before, table.status.not_in(FINAL)))


def sent_late(stale_after: timedelta) -> Invariant:
    """The staleness rule: no send begins at or past the message's limit.

    The limit is its expiry, else the engine's due time plus `stale_after`
    (`policies.staleness.stale_at`, the rule the dispatcher keeps). A send is
    timed by when it was handed over (the attempt's start), not by when the
    provider answered.
    """

    def offenders(c: Connection, _: datetime) -> Iterable[str]:
        attempt = DeliveryAttemptRow
        rows = c.execute(
            select(
                ScheduledMessageRow.key, ScheduledMessageRow.payload, func.min(attempt.started_at)
            )
            .join(attempt, attempt.key == ScheduledMessageRow.key)
            .where(attempt.outcome == "sent")
            .group_by(ScheduledMessageRow.key, ScheduledMessageRow.payload)
        )
        for key, payload, started in rows:
            try:
                message = codec.loads(ScheduledMessage, payload)
            except (ValidationError, ValueError, RecursionError):
                continue  # failed at dispatch as unreadable, never sent
            if _aware(started) >= stale_at(message, stale_after):
                yield key

    return Invariant(
        "sent_late",
        "no send begins at or past the message's staleness limit (its expiry, else due + "
        f"{stale_after})",
        offenders,
    )


def _aware(instant: datetime) -> datetime:
    # SQLite hands back what it stored; every stamp the store writes is UTC.
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


_OUTBOX = cast(Table, OutboxRow.__table__)


def standard_invariants(stale_after: timedelta = DEFAULT_STALE_AFTER) -> tuple[Invariant, ...]:
    """Every invariant, with the staleness rule at the runtime's default limit."""
    return (
        Invariant(
            "sent_after_final",
            "nothing is sent after it was cancelled, suppressed, expired or failed",
            _sent_after_final,
        ),
        Invariant(
            "sent_twice",
            "no message is sent twice (audit, delivery attempts, sandbox outbox)",
            _sent_twice,
        ),
        Invariant(
            "unsettled",
            "every message due before the check's time is in a final status",
            _unsettled,
        ),
        sent_late(stale_after),
    )


INVARIANTS = standard_invariants()


def check_invariants(
    store: SqlStore | Engine,
    *,
    due_before: datetime,
    invariants: Sequence[Invariant] = INVARIANTS,
) -> InvariantReport:
    """Run `invariants` on one snapshot of the store.

    Args:
        due_before: messages due before this instant must have reached a
            final status (pass a time a little in the past for a store that
            is still dispatching).

    Raises:
        StoreError: the store could not be read.
    """
    engine = store.engine if isinstance(store, SqlStore) else store
    violations = []
    try:
        with engine.connect() as c:
            c.execution_options(**READ_ONLY)
            with c.begin():
                for invariant in invariants:
                    keys = sorted(set(invariant.offenders(c, due_before)))
                    if keys:
                        examples = tuple(keys[:_EXAMPLES])
                        violations.append(
                            Violation(invariant.name, invariant.promise, len(keys), examples)
                        )
    except SQLAlchemyError as exc:
        raise StoreError(f"invariant check failed: {exc.__class__.__name__}") from exc
    return InvariantReport(tuple(i.name for i in invariants), tuple(violations))
