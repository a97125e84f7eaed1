"""The message ledger: due messages claimed under a lease and moved through their states.

The scheduler and dispatcher claim due messages and record each one's sends
and outcome in short transactions of their own, or, inside the dispatcher's
`together` block, in the block's one transaction (`Transactions`). Every
write names the claimer and changes nothing once its claim is lost. The
statements are built once, in `ledger_statements.py`; what the dispatcher
reads of a batch's recipients is `sending_facts.py`, run here in one snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from ..decisions import record
from ..event import Channel
from ..journey import ScheduledMessage
from ..message_status import IN_FLIGHT, MessageStatus, check_finish
from ..ports import Claim, Final, SendingFacts, Sent
from . import codec
from .among import among
from .ledger_statements import (
    BEGIN_SENDS,
    CLOSE_ATTEMPT,
    FINISH,
    FINISH_HELD,
    HOLD,
    INSERT_ATTEMPT,
    INSERT_AUDIT,
    MESSAGES,
    RENEW,
    RESCHEDULE,
    UNSEND,
    case_sending,
    fail_held_on,
    owned,
)
from .rows import audit_row, chunks, locking_in_key_order
from .sending_facts import read_sending_facts
from .tables import ScheduledMessageRow
from .transactions import Transactions

if TYPE_CHECKING:
    from ..ports import MessageLedger

__all__ = ["SqlLedger"]


class SqlLedger:
    """The `MessageLedger` port over the store's shared `Transactions`."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    @property
    def dialect(self) -> str:
        return self.transactions.dialect

    def holding_connection(self) -> AbstractContextManager[None]:
        return self.transactions.holding_connection()

    def together(self) -> AbstractContextManager[None]:
        return self.transactions.together()

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
        with self.transactions.write() as c:
            for condition, order in ((abandoned, table.lease_until), (due, table.due_at)):
                room = limit - len(claims)
                if room <= 0:
                    break
                # Ties broken by key, as the memory store breaks them: which of the
                # messages due at one instant fill a batch must not depend on the backend.
                candidates = (
                    select(table.key).where(condition).order_by(order, table.key).limit(room)
                )
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
                        table.reason,
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
                                case_sending(table.status),
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
                    Claim(decoded[key], MessageStatus(status), attempts, due_at, channel, reason)
                    for key, _, status, attempts, due_at, channel, reason in rows
                    if key in decoded
                ]
            failed = [
                fail_held_on(c, key, owner, now, reason) for key, reason in unreadable.items()
            ]
            self.transactions.defer_all(c, INSERT_AUDIT, [row for row in failed if row])
        return claims

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        """Fail a message this claimer holds, from its row alone (its payload is not read).

        For a message that cannot be dispatched for a reason of its own data
        (its payload, patient or journey does not decode; the store refused a
        value of it): the audit row is copied from the message's columns, which
        the store already holds. Returns whether this claimer still held it.
        """
        with self.transactions.write() as c:
            failed = fail_held_on(c, key, owner, now, reason)
            if failed is None:
                return False
            self.transactions.defer(c, INSERT_AUDIT, failed)
            return True

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
        with self.transactions.write() as c:
            for chunk in chunks(sorted(set(keys)), 500):
                query = select(MESSAGES.c.key).where(MESSAGES.c.key.in_(chunk))
                c.execute(locking_in_key_order(query, MESSAGES.c.key, self.dialect))

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
        with self.transactions.write() as c:
            for channel, keys in by_channel.items():
                for chunk in chunks(keys, 500):
                    rows = c.execute(
                        BEGIN_SENDS,
                        {
                            "m_keys": chunk,
                            "m_owner": owner,
                            "m_channel": channel.value,
                            "m_now": now,
                            "m_until": lease_until,
                        },
                    )
                    attempts.update({key: int(attempt) for key, attempt in rows})
            if attempts and self.transactions.deferring(CLOSE_ATTEMPT):
                # Closes waiting in the block must not reach these new pending attempts.
                self.transactions.flush_deferred(c, CLOSE_ATTEMPT)
            for key, attempt in attempts.items():
                self.transactions.defer(
                    c,
                    INSERT_ATTEMPT,
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
        with self.transactions.write() as c:
            for chunk in chunks(sorted(set(keys)), 500):
                rows = c.execute(RENEW, {"m_keys": chunk, "m_owner": owner, "m_until": until})
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
        with self.transactions.write() as c:
            parameters = owned(
                message.key,
                owner,
                status=status,
                reason=reason,
                provider_id=provider_id,
                sent_at=now if status == MessageStatus.SENT else None,
                channel=channel.value if channel else None,
                now=now,
            )
            if c.execute(FINISH, parameters).rowcount != 1:
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
            self.transactions.defer(c, INSERT_AUDIT, audit_row(entry))
            return True

    def finish_sent(self, sends: Sequence[Sent], owner: str) -> set[str]:
        """Mark accepted sends "sent", with their audit rows; the keys this claimer still held.

        On PostgreSQL one statement finds and locks the rows still held, and
        one executemany updates them: two round trips for a batch instead of
        one per message. SQLite updates one row at a time (no round trips),
        each update saying whether the row was still held.
        """
        parameters = {
            sent.message.key: owned(
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
        with self.transactions.write() as c:
            if self.dialect == "postgresql":
                held = self._lock_held(c, parameters, owner)
                if held:
                    # Locked above: each of these updates moves its row.
                    c.execute(FINISH, [parameters[key] for key in parameters if key in held])
            else:
                held = {key for key, p in parameters.items() if c.execute(FINISH, p).rowcount == 1}
            audited = []
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
                audited.append(audit_row(entry))
            # One statement: the tally trigger's locks in one order (`Transactions.flush_deferred`).
            self.transactions.defer_all(c, INSERT_AUDIT, audited)
        return held

    def finish_all(self, finals: Sequence[Final], owner: str, now: datetime) -> set[str]:
        """Move held messages to final statuses without a send, with their audit rows.

        What the send-time gate settles (expired, suppressed) comes by the
        hundred when a backlog falls due: one update per (status, reason)
        and chunk, each returning the keys this claimer still held, instead
        of a statement (and, in a `together` block, a savepoint) per message.
        The audit rows are deferred with the block's others. Returns the
        keys moved; a key missing lost its claim and is not audited.
        """
        groups: dict[tuple[MessageStatus, str], list[Final]] = {}
        for final in finals:
            check_finish(final.status)
            groups.setdefault((final.status, final.reason), []).append(final)
        held: set[str] = set()
        with self.transactions.write() as c:
            if self.dialect == "postgresql":
                # In key order first, as every locker of several messages: the
                # updates below would lock them in whatever order their plan reads.
                self._lock_held(c, [f.message.key for f in finals], owner)
            for (status, reason), group in groups.items():
                for chunk in chunks(sorted({f.message.key for f in group}), 500):
                    held.update(
                        c.execute(
                            FINISH_HELD,
                            {
                                "m_keys": chunk,
                                "m_owner": owner,
                                "m_status": status,
                                "m_reason": reason,
                                "m_now": now,
                            },
                        ).scalars()
                    )
            audited: dict[str, dict[str, Any]] = {}
            for final in finals:
                key = final.message.key
                if key in held and key not in audited:
                    entry = record(final.message, now, final.status, final.reason)
                    audited[key] = audit_row(entry)
            # One statement, as `finish_sent`'s: the tally trigger's locks in one order.
            self.transactions.defer_all(c, INSERT_AUDIT, list(audited.values()))
        return held

    def _lock_held(self, c: Connection, keys: Iterable[str], owner: str) -> set[str]:
        """Lock the rows of `keys` this claimer still holds, in key order; their keys."""
        held: set[str] = set()
        for chunk in chunks(sorted(set(keys)), 500):
            found = c.execute(_LOCK_HELD, {"m_keys": chunk, "m_owner": owner})
            held.update(found.scalars().all())
        return held

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        """A send that did not happen: back from "sending" to "claimed", lease kept.

        Used when a channel refused the message (the next channel may take
        it) and when a provider confirms an interrupted send never arrived.
        """
        with self.transactions.write() as c:
            moved = c.execute(UNSEND, owned(key, owner, now=now)).rowcount == 1
            if moved:
                self._close_attempt(c, key, now, outcome, error, None)
            return moved

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        """Keep a message in its in-flight status, under this claimer's lease until `until`."""
        with self.transactions.write() as c:
            held = c.execute(HOLD, owned(key, owner, until=until, reason=reason))
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
        audit: bool = True,
    ) -> bool:
        """Put a claimed message back, due at `due_at` (a deferral, a retry, a pacing hold).

        Without `audit`, no audit row: a message held again for the same reason.
        """
        with self.transactions.write() as c:
            parameters = owned(message.key, owner, reason=reason, due_at=due_at, now=now)
            if c.execute(RESCHEDULE, parameters).rowcount != 1:
                return False
            if attempt_outcome is not None:
                self._close_attempt(c, message.key, now, attempt_outcome, error, None)
            if audit:
                entry = record(message, now, MessageStatus.SCHEDULED, reason)
                self.transactions.defer(c, INSERT_AUDIT, audit_row(entry) | {"due_at": due_at})
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
        self.transactions.defer(
            c,
            CLOSE_ATTEMPT,
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
        """What dispatching `messages` needs to read, in one transaction (`read_sending_facts`)."""
        with self.transactions.read() as c:
            return read_sending_facts(c, messages, since)


if TYPE_CHECKING:

    def _implements(ledger: SqlLedger) -> MessageLedger:
        """The port this ledger implements, checked by mypy."""
        return ledger


# Built once, as the ledger's other statements (`ledger_statements`); PostgreSQL
# only, where `_lock_held` runs: the rows locked one after another in key order.
_LOCK_HELD = locking_in_key_order(
    select(MESSAGES.c.key).where(
        among(MESSAGES.c.key, "m_keys"),
        MESSAGES.c.lease_owner == bindparam("m_owner"),
        MESSAGES.c.status.in_(IN_FLIGHT),
    ),
    MESSAGES.c.key,
    "postgresql",
)
