"""A console over a store that has seen two versions of the knee-replacement flow.

Version 1 ran first and still has an episode running; version 2 (a renamed
title, a renamed stage) is current. Three knee-replacement streams and one
cardiology stream are fed through the API and dispatched on a virtual clock,
so the flow pages have figures to show.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.roles import Role
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests.live import TestClient
from tests.samples import ROOT, sample_events

START = datetime(2026, 3, 1, tzinfo=UTC)
TOKENS = {
    Role.ADMIN: "admin-token-for-the-tests",
    Role.OPERATIONS: "operations-token-for-the-tests",
    Role.MARKETING: "marketing-token-for-the-tests",
}
ROLE_TOKENS = json.dumps(
    {TOKENS[Role.OPERATIONS]: "operations", TOKENS[Role.MARKETING]: "marketing"}
)


def bearer(role: Role) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class Console:
    service: EmbeddedService
    clock: VirtualClock
    client: TestClient

    def run_until(self, until: datetime) -> None:
        """Move the clock to `until`, at most two hours at a time, dispatching what falls due."""
        while self.clock.now() < until:
            self.clock.advance(min(timedelta(hours=2), until - self.clock.now()))
            while self.service.dispatcher.tick():
                pass

    def feed(self, events: list[dict[str, Any]]) -> None:
        for data in sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"])):
            self.run_until(datetime.fromisoformat(data["occurred_at"]))
            response = self.client.post("/events", json=data, headers=bearer(Role.ADMIN))
            assert response.status_code == 202, response.text


@contextmanager
def opened(db: str, flows: Path, clock: VirtualClock, **overrides: Any) -> Iterator[Console]:
    settings = Settings(
        db=db,
        flows=flows,
        templates=overrides.pop("templates", ROOT / "templates"),
        samples=ROOT / "samples" / "events",
        api_token=TOKENS[Role.ADMIN],
        api_tokens=ROLE_TOKENS,
        **overrides,
    )
    service = EmbeddedService.build(settings, clock=clock)
    try:
        with TestClient(create_app(service, run_dispatcher=False)) as client:
            yield Console(service, clock, client)
    finally:
        service.store.engine.dispose()


def copies(name: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    """`count` copies of a sample stream, each with its own event, patient and subject ids."""
    found = []
    for copy in range(first, first + count):
        for data in sample_events(name):
            data = json.loads(json.dumps(data))
            suffix = f"-{copy:03d}"
            data["id"] += suffix
            data["patient"]["id"] += suffix
            for part in ("appointment", "encounter"):
                if data.get(part):
                    data[part]["id"] += suffix
            found.append(data)
    return found


def bump_knee_replacement(flows: Path) -> None:
    path = flows / "knee-replacement.yaml"
    text = path.read_text()
    text = text.replace("\nversion: 1\n", "\nversion: 2\n", 1)
    text = text.replace("\ntitle: Knee replacement\n", "\ntitle: Knee replacement (v2)\n", 1)
    path.write_text(text)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    flows = root / "flows"
    shutil.copytree(ROOT / "flows", flows)
    db = f"sqlite:///{root / 'store.db'}"
    clock = VirtualClock(START)
    # Version 1 starts an episode that is still running when version 2 arrives.
    with opened(db, flows, clock) as first:
        first.feed(
            [
                e
                for e in copies("knee-replacement", 1, first=9)
                if e["type"] == "appointment.booked"
            ][:1]
        )
    bump_knee_replacement(flows)
    with opened(db, flows, clock) as console:
        console.feed(copies("knee-replacement", 3) + copies("cardiology-consult", 1))
        console.run_until(datetime(2026, 5, 1, tzinfo=UTC))
        yield console
