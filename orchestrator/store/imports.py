"""Imports of history: the store's record of them, and the hold on their messages.

An import (`orchestrator ingest --history`) is opened, fed in batches and
closed. While it is open, every message its events schedule or update is held:
its `due_at`, the instant the dispatcher next looks at it, is kept at the
import's `hold_until` or later, so no dispatcher (embedded or Kafka worker,
in any process on this store) claims it before the whole file is decided.
Closing the import gives each held message back its due time.

The hold is only a later `due_at`, so it needs no one to end it: an import
whose client died is never renewed, and its messages fall due when its hold
passes, as any other message does. Each batch renews the hold, so the
setting bounds how long one batch may take, not the whole import.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, insert, select, update

from ..journey import ScheduledMessage
from . import codec
from .tables import ImportRow, ScheduledMessageRow
from .transactions import Transactions
from .unit import ImportHold

__all__ = ["ImportHold", "ImportHolds"]

_MESSAGES = cast(Table, ScheduledMessageRow.__table__)
_IMPORTS = cast(Table, ImportRow.__table__)


@dataclass
class ImportHolds:
    """Opens, renews and closes imports over the store's `Transactions`."""

    transactions: Transactions

    def open(self, now: datetime, hold: timedelta) -> ImportHold:
        """A new import, holding its messages until `now + hold` unless renewed."""
        opened = ImportHold(uuid.uuid4().hex, now + hold)
        with self.transactions.write() as c:
            c.execute(
                insert(_IMPORTS).values(
                    id=opened.import_id, opened_at=now, hold_until=opened.until, closed_at=None
                )
            )
        return opened

    def renew(self, import_id: str, now: datetime, hold: timedelta) -> ImportHold | None:
        """Extend an open import's hold to `now + hold`, for what it holds already too.

        Returns None when the import is unknown, closed, or its hold has
        passed: what it held may have been sent already, so the import can no
        longer promise that its file is decided first.
        """
        until = now + hold
        with self.transactions.write() as c:
            moved = c.execute(
                update(_IMPORTS)
                .where(
                    _IMPORTS.c.id == import_id,
                    _IMPORTS.c.closed_at.is_(None),
                    _IMPORTS.c.hold_until > now,
                )
                .values(hold_until=until)
            ).rowcount
            if moved != 1:
                return None
            c.execute(
                update(_MESSAGES)
                .where(
                    _MESSAGES.c.import_id == import_id,
                    _MESSAGES.c.status == "scheduled",
                    _MESSAGES.c.due_at < until,
                )
                .values(due_at=until, updated_at=now)
            )
        return ImportHold(import_id, until)

    def close(self, import_id: str, now: datetime) -> int | None:
        """Close an import: its held messages fall due when the engine made them due.

        Returns how many were released, or None for an unknown import.
        Closing twice releases nothing the second time.
        """
        with self.transactions.write() as c:
            found = c.execute(
                select(_IMPORTS.c.closed_at).where(_IMPORTS.c.id == import_id)
            ).first()
            if found is None:
                return None
            if found[0] is not None:
                return 0
            c.execute(update(_IMPORTS).where(_IMPORTS.c.id == import_id).values(closed_at=now))
            held = c.execute(
                select(_MESSAGES.c.key, _MESSAGES.c.payload).where(
                    _MESSAGES.c.import_id == import_id, _MESSAGES.c.status == "scheduled"
                )
            ).all()
            released = [
                {"r_key": key, "r_due": _due(payload, now), "r_now": now} for key, payload in held
            ]
            for start in range(0, len(released), 500):
                c.execute(_RELEASE, released[start : start + 500])
        return len(released)


def _due(payload: str | bytes, now: datetime) -> datetime:
    """When a released message falls due: the engine's time, from its payload.

    A payload that does not read back falls due now: the dispatcher then fails
    that message alone (`decode:message:*`), and the rest of the import is
    released with it, not held until its hold runs out.
    """
    try:
        return codec.loads(ScheduledMessage, payload).due_at
    except (ValidationError, ValueError, RecursionError):
        return now


_RELEASE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.key == bindparam("r_key"), _MESSAGES.c.status == "scheduled")
    .values(due_at=bindparam("r_due"), import_id=None, updated_at=bindparam("r_now"))
)
