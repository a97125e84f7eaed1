"""The sandbox connector: records what would have been sent, sends nothing.

The default when no Twilio or SendGrid credentials are set. Its outbox
lives in the store (`orchestrator outbox`, `GET /outbox`), and `find`
answers from it, so an interrupted send is reconciled instead of repeated.

`latency` makes each send take that long after it is recorded, as a
provider's answer would: it rehearses load, and a crash between a send and
its settling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from orchestrator.clock import Clock
from orchestrator.event import Channel
from orchestrator.ports import Outbox, OutboxEntry, Outgoing, Receipt

__all__ = ["SandboxConnector"]


@dataclass
class SandboxConnector:
    store: Outbox
    channel: Channel
    clock: Clock
    latency: float = 0.0

    def send(self, outgoing: Outgoing) -> Receipt:
        entry = OutboxEntry(
            key=outgoing.key,
            channel=outgoing.channel.value,
            to=outgoing.to,
            subject=outgoing.subject,
            body=outgoing.body,
            html=outgoing.html,
            sent_at=self.clock.now(),
        )
        receipt = Receipt(f"sandbox-{self.store.outbox_add(entry)}")
        if self.latency:
            time.sleep(self.latency)
        return receipt

    def find(self, key: str) -> Receipt | None:
        found = self.store.outbox_find(key, self.channel.value)
        return Receipt(f"sandbox-{found}") if found is not None else None
