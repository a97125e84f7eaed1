"""Fixtures for the runtime tests: a virtual clock, templates for the test flow, a runtime.

A `Runtime` is the embedded runtime's parts wired by hand on a store (each
backend the test runs on: see `backends` in tests/conftest.py) and a `VirtualClock`: the event processor and the dispatcher
with sandbox connectors, any of which a test may replace with a fake, and the
deferred intake (kept in the store, so a new `IntakeQueue` each time sees it).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from connectors.sandbox import SandboxConnector
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel, Event
from orchestrator.flows.model import Flow
from orchestrator.memory_store import MemoryStore
from orchestrator.ports import InboundArchive, MessageView
from orchestrator.runtime import (
    Connector,
    Dispatcher,
    EventProcessor,
    EventResult,
    FlowRegistry,
    Organisation,
)
from orchestrator.runtime.intake import Intake, IntakeQueue, events_of
from orchestrator.store import InboundArchive as SqlInboundArchive
from orchestrator.store import SqlStore
from orchestrator.store.delivery import DeliveryLedger
from orchestrator.templates import TemplateSet
from tests.builders import T0, make_flow, write_templates

FLOW = make_flow()
ORG = Organisation("Riverside Health", "+1 555 0100", "https://portal.example.org")
IN_FLIGHT = frozenset({"claimed", "sending"})
# A store the runtime tests read back from: each offers the same readers.
Store = SqlStore | MemoryStore


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> TemplateSet:
    """Templates for every message of `make_flow()`."""
    root = tmp_path_factory.mktemp("templates")
    names = tuple(m.template for stage in FLOW.stages for m in stage.messages)
    return TemplateSet(write_templates(root, names))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@dataclass
class Runtime:
    store: Store
    clock: VirtualClock
    flows: FlowRegistry
    processor: EventProcessor
    dispatcher: Dispatcher

    @property
    def intake(self) -> Intake:
        """The intake over the processor: what the transports hand their input to."""
        return Intake(self.processor, self.store, self.clock)

    @property
    def deferred(self) -> IntakeQueue:
        """The queue a connector's send thread hands opt-outs to (kept in the inbound archive)."""
        return IntakeQueue(self.intake, inbound_archive(self.store))

    def tick(self) -> int:
        """What `Runtime.tick` does: take what the send threads queued, then one batch."""
        return self.deferred.drain() + self.dispatcher.tick()

    def process(self, *events: Event) -> list[EventResult]:
        """Process events as a transport would: what is rejected is kept (source `api`)."""
        return self.intake.take("api", events_of(events))

    def run_until(self, instant: datetime | None, *, limit: int = 500) -> None:
        """Tick, moving the clock from one due message to the next, up to `instant`.

        With `instant` None, until no message is pending; the clock stays at the last one.
        """
        for _ in range(limit):
            self.tick()
            rows = self.store.messages()
            if any(m.status in IN_FLIGHT for m in rows):
                # A claim left behind: its lease has to run out first.
                self.clock.advance(self.dispatcher.lease + timedelta(seconds=1))
                continue
            due = min((m.due_at for m in rows if m.status == "scheduled"), default=None)
            if due is None or (instant is not None and due > instant):
                if instant is not None:
                    self.clock.move_to(instant)
                return
            self.clock.move_to(due)
        raise AssertionError(f"still dispatching after {limit} ticks")

    def run_until_idle(self) -> None:
        """Tick until no message is pending."""
        self.run_until(None)

    def at(self, instant: datetime, *events: Event) -> list[EventResult]:
        """Dispatch what falls due before `instant`, then process `events` at `instant`."""
        self.run_until(instant)
        return self.process(*events)

    def message(self, message_id: str, patient_id: str = "p-1") -> MessageView:
        """The newest scheduled message of this flow message for this patient."""
        found = [m for m in self.store.messages(patient_id=patient_id) if m.message == message_id]
        assert found, f"no {message_id} for {patient_id}"
        return found[-1]

    def outbox(self) -> Counter[tuple[str, str]]:
        """How many outbox rows each (key, channel) has."""
        return Counter((e.key, e.channel) for e in self.store.outbox(limit=10_000))


BuildRuntime = Callable[..., Runtime]


def delivery_reports(store: Store) -> DeliveryLedger | MemoryStore:
    """Provider feedback on the store: the SQL store's `DeliveryLedger`, or the memory store."""
    return store if isinstance(store, MemoryStore) else DeliveryLedger(store.transactions)


def inbound_archive(store: Store) -> InboundArchive:
    """The inbound archive on the store: the SQL store's `InboundArchive`, or the memory store."""
    return store if isinstance(store, MemoryStore) else SqlInboundArchive(store)


@pytest.fixture
def build_runtime(store: Store, clock: VirtualClock, templates: TemplateSet) -> BuildRuntime:
    """A runtime factory: flows, connectors and dispatcher options may be replaced."""

    def build(
        flows: FlowRegistry | Mapping[str, Flow] | None = None,
        *,
        connectors: Mapping[Channel, Connector] | None = None,
        template_set: TemplateSet | None = None,
        **dispatcher_options: Any,
    ) -> Runtime:
        if flows is None:
            flows = {FLOW.id: FLOW}
        registry = flows if isinstance(flows, FlowRegistry) else FlowRegistry.of(flows)
        sandbox: dict[Channel, Connector] = {
            channel: SandboxConnector(store, channel, clock) for channel in Channel
        }
        dispatcher = Dispatcher(
            store=store,
            flows=registry,
            templates=template_set or templates,
            connectors=sandbox | dict(connectors or {}),
            clock=clock,
            org=ORG,
            rng=random.Random(7),
            **dispatcher_options,
        )
        processor = EventProcessor(store, registry, clock)
        return Runtime(store, clock, registry, processor, dispatcher)

    return build


@pytest.fixture
def runtime(build_runtime: BuildRuntime) -> Runtime:
    """The test flow on sandbox connectors."""
    return build_runtime()
