"""Send buckets in the SQL store: one row per (sender, channel), taken under its row lock.

Every dispatcher on the store paces its sends through the same rows, so
two processes together stay within a sender's rate. A take inserts the row
if it is missing, locks it (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's
write transaction holds the one write lock from its start), runs the pure
bucket math (`policies.pacing.take_all`) for the sends in order and writes the
bucket back, in the caller's transaction when it is in `together`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..event import Channel
from ..policies.pacing import Ask, Bucket, Pace, Taken, take_all
from .tables import SendBucketRow
from .transactions import Transactions

if TYPE_CHECKING:
    from ..ports import SendBuckets

__all__ = ["SendBucketLedger"]

_BUCKETS = cast(Table, SendBucketRow.__table__)


class SendBucketLedger:
    """The `SendBuckets` port over one SQL store's transactions."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def take_tokens(
        self,
        sender: str,
        channel: Channel,
        pace: Pace,
        sends: Sequence[Ask],
        now: datetime,
    ) -> list[Taken]:
        if not sends:
            return []
        where = (_BUCKETS.c.sender == sender, _BUCKETS.c.channel == channel.value)
        with self.transactions.write() as c:
            insert = pg_insert if self.transactions.dialect == "postgresql" else sqlite_insert
            # A new bucket starts full; two first takers insert it once.
            c.execute(
                insert(_BUCKETS)
                .values(sender=sender, channel=channel.value, tokens=pace.burst, updated_at=now)
                .on_conflict_do_nothing()
            )
            query = select(_BUCKETS.c.tokens, _BUCKETS.c.updated_at, _BUCKETS.c.queued_until).where(
                *where
            )
            if self.transactions.dialect == "postgresql":
                query = query.with_for_update()
            tokens, updated_at, queued_until = c.execute(query).one()
            bucket, ready = take_all(Bucket(tokens, updated_at, queued_until), pace, sends, now)
            assert bucket is not None
            c.execute(
                update(_BUCKETS)
                .where(*where)
                .values(
                    tokens=bucket.tokens,
                    updated_at=bucket.updated_at,
                    queued_until=bucket.queued_until,
                )
            )
        return ready


if TYPE_CHECKING:

    def _implements(buckets: SendBucketLedger) -> SendBuckets:
        """The port this part implements, checked by mypy."""
        return buckets
