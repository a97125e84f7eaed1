"""Test sends in the SQL store: their own table, read by nothing that counts messages.

Figures, the audit, frequency caps and the invariants read scheduled
messages, the audit log and delivery attempts; a test send writes none of
them (`orchestrator.preview`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert, select

from ..event import Channel
from ..ports import RecordedTestSend
from .tables import TestSendRow
from .transactions import Transactions

__all__ = ["TestSendLedger"]

_TEST_SENDS = cast(Table, TestSendRow.__table__)


@dataclass
class TestSendLedger:
    """`RecordedTestSends` over one SQL store's transactions."""

    __test__ = False  # not a pytest class

    transactions: Transactions

    def record_test_send(self, send: RecordedTestSend) -> int:
        with self.transactions.write() as c:
            result = c.execute(
                insert(_TEST_SENDS).values(
                    key=send.key,
                    flow_id=send.flow_id,
                    flow_version=send.flow_version,
                    message_id=send.message_id,
                    persona=send.persona,
                    language=send.language,
                    channel=send.channel.value,
                    to_address=send.to,
                    subject=send.subject,
                    body=send.body,
                    provider_id=send.provider_id,
                    sent_at=send.sent_at,
                    requested_by=send.requested_by,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def test_sends(self, limit: int = 100) -> list[RecordedTestSend]:
        with self.transactions.read() as c:
            rows = c.execute(select(_TEST_SENDS).order_by(_TEST_SENDS.c.id.desc()).limit(limit))
            return [
                RecordedTestSend(
                    key=r.key,
                    flow_id=r.flow_id,
                    flow_version=r.flow_version,
                    message_id=r.message_id,
                    persona=r.persona,
                    language=r.language,
                    channel=Channel(r.channel),
                    to=r.to_address,
                    subject=r.subject,
                    body=r.body,
                    provider_id=r.provider_id,
                    sent_at=r.sent_at,
                    requested_by=r.requested_by,
                    id=r.id,
                )
                for r in rows
            ]
