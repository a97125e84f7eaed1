"""Parity: `simulate` and the embedded runtime make the same decisions about the same stream.

The runtime here is the one `orchestrator run` builds (`EmbeddedService.build`:
SQLite, the sandbox connectors) on a virtual clock, driven by hand: before
each event, the clock moves from one due message to the next and the
dispatcher ticks; then the event is processed at the time it occurred. Its
audit log must read, line for line, as `simulate` prints it.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.clock import VirtualClock
from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows import load_flows
from orchestrator.runtime.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.simulate import in_history_order, simulate
from orchestrator.templates import TemplateSet
from tests.samples import ROOT, sample_events

# A few ticks per due instant are plenty; more means the runtime never settles.
_TICKS = 10_000


def run_the_service(events: list[Event], db: str) -> list[str]:
    """The service's audit log after `events`, played in time order on a virtual clock."""
    settings = Settings(db=db, flows=ROOT / "flows", templates=ROOT / "templates")
    clock = VirtualClock(events[0].occurred_at)
    service = EmbeddedService.build(settings, clock=clock)
    ticks = 0

    def dispatch_due(before: Event | None) -> None:
        nonlocal ticks
        while True:
            due = service.store.next_due()
            if due is None or (before is not None and due >= before.occurred_at):
                return
            clock.move_to(due)
            while service.dispatcher.tick():
                ticks += 1
                assert ticks < _TICKS

    try:
        for event in events:
            dispatch_due(event)
            clock.move_to(event.occurred_at)
            assert [r.status for r in service.processor.process([event])] != ["rejected"]
        dispatch_due(None)
        return [json.dumps(r.as_json(), sort_keys=True) for r in service.store.audit()]
    finally:
        service.store.engine.dispose()


def test_simulate_prints_the_decisions_the_embedded_runtime_audits(tmp_path: Path) -> None:
    # Bookings, a reschedule, a cancellation, a no-show, an opt-out, quiet-hour deferrals.
    events = in_history_order(parse_event(data) for data in sample_events("knee-replacement"))
    templates = TemplateSet(ROOT / "templates")
    flows = load_flows([ROOT / "flows"], templates).flows

    simulated = [
        json.dumps(r.as_json(), sort_keys=True) for r in simulate(events, flows, templates)
    ]

    assert simulated == run_the_service(events, f"sqlite:///{tmp_path / 'o.db'}")
    assert any('"status": "sent"' in line for line in simulated)
