"""Rejected input: what could not be accepted, kept with why (the API, MLLP, Kafka and FHIR intakes)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert

from .rows import REJECTED_BODY_LIMIT
from .tables import RejectedInputRow
from .transactions import Transactions

if TYPE_CHECKING:
    from ..ports import RejectedInputs

__all__ = ["RejectedLog"]


class RejectedLog:
    """The `RejectedInputs` port over the store's shared `Transactions`."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        """Keep input that could not be accepted, with why (cut at 64 KiB)."""
        truncated = len(body) > REJECTED_BODY_LIMIT
        with self.transactions.write() as c:
            c.execute(
                insert(RejectedInputRow).values(
                    received_at=now,
                    source=source,
                    reason=reason,
                    body=body[:REJECTED_BODY_LIMIT],
                    truncated=truncated,
                )
            )


if TYPE_CHECKING:

    def _implements(log: RejectedLog) -> RejectedInputs:
        """The port this log implements, checked by mypy."""
        return log
