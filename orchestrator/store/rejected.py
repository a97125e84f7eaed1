"""Rejected input: what could not be accepted, kept with why (the API, MLLP, Kafka and FHIR intakes)."""

from __future__ import annotations

from collections.abc import Sequence
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
        self.reject_many(source, [(body, reason)], now)

    def reject_many(self, source: str, refused: Sequence[tuple[bytes, str]], now: datetime) -> None:
        """Keep each (body, reason) of one batch in one transaction: all of them, or none."""
        if not refused:
            return
        with self.transactions.write() as c:
            c.execute(
                insert(RejectedInputRow),
                [
                    {
                        "received_at": now,
                        "source": source,
                        "reason": reason,
                        "body": body[:REJECTED_BODY_LIMIT],
                        "truncated": len(body) > REJECTED_BODY_LIMIT,
                    }
                    for body, reason in refused
                ],
            )


if TYPE_CHECKING:

    def _implements(log: RejectedLog) -> RejectedInputs:
        """The port this log implements, checked by mypy."""
        return log
