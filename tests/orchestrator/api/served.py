"""The HTTP app over a store of either backend, for the input-limit and fuzz tests.

`served(store_url)` builds the embedded service on the store that the
`store_url` fixture gives (SQLite or PostgreSQL) and drives its app in
process; `kept()` counts the rejected-input rows, which every refusal adds to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests import store_reads
from tests.inbound_service import build_service
from tests.live import TestClient
from tests.samples import ROOT

__all__ = ["NDJSON", "START", "Served", "line", "served"]

START = datetime(2026, 3, 1, tzinfo=UTC)
NDJSON = {"content-type": "application/x-ndjson"}


@dataclass
class Served:
    service: EmbeddedService
    client: TestClient

    def kept(self) -> int:
        """How many inputs the rejected-input table holds."""
        return len(store_reads.rejected(self.service.store, limit=1_000_000))

    def post_lines(self, *lines: str | bytes) -> Any:
        body = b"".join(
            (line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines
        )
        return self.client.post("/events", content=body, headers=NDJSON)

    def alive(self) -> bool:
        return self.client.get("/healthz").json() == {"status": "ok"}


def line(data: Any) -> str:
    return json.dumps(data)


@contextmanager
def served(db: str, *, now: datetime = START, **overrides: Any) -> Iterator[Served]:
    settings = Settings(
        db=db,
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        inbound_services={"52": "cardiology.consult"},
        **overrides,
    )
    service = build_service(settings, VirtualClock(now))
    try:
        with TestClient(create_app(service, run_dispatcher=False)) as client:
            yield Served(service, client)
    finally:
        service.store.engine.dispose()
