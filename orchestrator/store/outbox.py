"""The sandbox outbox: what the sandbox connector would have sent, newest last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, func, insert, select

from ..ports import OutboxEntry
from .rows import chunks
from .tables import OutboxRow
from .transactions import Transactions

if TYPE_CHECKING:
    from ..ports import Outbox

__all__ = ["SqlOutbox"]

# The Core table: inserting through it skips the ORM's bulk-persistence path.
_OUTBOX = cast(Table, OutboxRow.__table__)
_INSERT_OUTBOX = insert(_OUTBOX)


class SqlOutbox:
    """The `Outbox` port over the store's shared `Transactions`, and its listing."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def outbox_add(self, entry: OutboxEntry) -> int:
        with self.transactions.write() as c:
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
        with self.transactions.read() as c:
            return c.execute(
                select(func.min(OutboxRow.id)).where(
                    OutboxRow.key == key, OutboxRow.channel == channel
                )
            ).scalar()

    def outbox_for(self, keys: Sequence[str]) -> dict[str, OutboxEntry]:
        """The first entry of each of these message keys that has one."""
        found: dict[str, OutboxEntry] = {}
        with self.transactions.read() as c:
            for chunk in chunks(list(dict.fromkeys(keys)), 500):
                query = select(OutboxRow).where(OutboxRow.key.in_(chunk)).order_by(OutboxRow.id)
                for r in c.execute(query).all():
                    found.setdefault(
                        r.key,
                        OutboxEntry(
                            r.key, r.channel, r.to_address, r.subject, r.body, r.html, r.sent_at
                        ),
                    )
        return found

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """The newest `limit` entries, newest first."""
        with self.transactions.read() as c:
            rows = c.execute(select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)).all()
            return [
                OutboxEntry(r.key, r.channel, r.to_address, r.subject, r.body, r.html, r.sent_at)
                for r in rows
            ]


if TYPE_CHECKING:

    def _implements(outbox: SqlOutbox) -> Outbox:
        """The port this outbox implements, checked by mypy."""
        return outbox
