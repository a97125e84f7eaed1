"""The inbound archive: raw HL7 v2 and FHIR messages, kept before they are parsed.

A message is written (and committed) as `received` the moment it arrives,
then settled as `accepted`, `duplicate` or `rejected` once its events are
committed or refused. Nothing an interface engine was told we have is only
in memory. The runtime's deferred intake (`IntakeQueue`) keeps what a send
thread learned here too, as protocol `deferred:<source>`, and takes what is
`pending` later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError
from ..ports import ArchivedMessage, Settlement
from .connection import READ_ONLY, READ_WRITE
from .sql import SqlStore
from .tables import InboundMessageRow

__all__ = ["InboundArchive", "Settlement"]

_TABLE = cast(Table, InboundMessageRow.__table__)
# Built once: a message sent and acknowledged alone runs both.
_KEEP = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
_SETTLE = (
    update(_TABLE)
    # Settled once: a second settlement of one message (a retry racing the
    # first) changes nothing.
    .where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.status == "received")
    .values(
        status=bindparam("new_status"),
        event_id=bindparam("new_event_id"),
        reason=bindparam("new_reason"),
    )
)


class InboundArchive:
    def __init__(self, store: SqlStore) -> None:
        self.engine = store.engine

    @contextmanager
    def _tx(self, begin: Mapping[str, str] = READ_WRITE) -> Iterator[Connection]:
        try:
            with self.engine.connect() as connection:
                connection.execution_options(**begin)
                with connection.begin():
                    yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"inbound archive failed: {exc.__class__.__name__}") from exc

    def keep(self, protocol: str, bodies: Sequence[bytes], now: datetime) -> list[int]:
        """Store raw messages as `received` in one transaction; their ids, in order.

        Raises:
            StoreError: nothing was kept.
        """
        if not bodies:
            return []
        rows = [
            {"received_at": now, "protocol": protocol, "body": body, "status": "received"}
            for body in bodies
        ]
        with self._tx() as c:
            result = c.execute(_KEEP, rows)
            return [int(i) for i in result.scalars()]

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record each message's outcome, in one transaction."""
        if not settlements:
            return
        with self._tx() as c:
            c.execute(
                _SETTLE,
                [
                    {
                        "row_id": s.id,
                        "new_status": s.status,
                        "new_event_id": s.event_id,
                        "new_reason": s.reason,
                    }
                    for s in settlements
                ],
            )

    def pending(self, protocol_prefix: str, limit: int) -> list[ArchivedMessage]:
        """The oldest messages still `received` whose protocol starts with the prefix."""
        query = (
            select(_TABLE.c.id, _TABLE.c.protocol, _TABLE.c.body)
            .where(
                _TABLE.c.status == "received",
                _TABLE.c.protocol.startswith(protocol_prefix, autoescape=True),
            )
            .order_by(_TABLE.c.id)
            .limit(limit)
        )
        with self._tx(READ_ONLY) as c:
            return [ArchivedMessage(row.id, row.protocol, row.body) for row in c.execute(query)]

    def messages(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest archived messages, optionally of one status."""
        query = select(_TABLE).order_by(_TABLE.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(_TABLE.c.status == status)
        with self._tx(READ_ONLY) as c:
            return [dict(row._mapping) for row in c.execute(query)]
