"""The flow versions a store has run, each with its digest and source (`FlowRegistry` checks them)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select

from .tables import FlowVersionRow
from .transactions import Transactions

if TYPE_CHECKING:
    from ..ports import FlowVersions

__all__ = ["FlowVersionLog"]


class FlowVersionLog:
    """The `FlowVersions` port over the store's shared `Transactions`."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Every flow version run before: (id, version) -> (digest, source)."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(
                    FlowVersionRow.flow_id,
                    FlowVersionRow.version,
                    FlowVersionRow.digest,
                    FlowVersionRow.source,
                )
            )
            return {(f, v): (d, s) for f, v, d, s in rows}

    def record_flow_version(self, flow_id: str, version: int, source: str, now: datetime) -> None:
        digest = hashlib.sha256(source.encode()).hexdigest()
        with self.transactions.write() as c:
            c.execute(
                insert(FlowVersionRow).values(
                    flow_id=flow_id,
                    version=version,
                    digest=digest,
                    source=source,
                    first_seen_at=now,
                )
            )


if TYPE_CHECKING:

    def _implements(log: FlowVersionLog) -> FlowVersions:
        """The port this log implements, checked by mypy."""
        return log
