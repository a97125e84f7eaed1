"""The simulator: the runtime's own processor and dispatcher on a virtual clock.

`Simulator` wires what the embedded service wires (`EventProcessor`,
`Dispatcher`, sandbox connectors) over an in-memory store (`MemoryStore`)
that lives only as long as the simulation, and drives them on a `VirtualClock`: before each
event the clock jumps from one due message to the next, the dispatcher
dispatching each, then the event is processed at the time it occurred. The
decisions it yields are the audit rows that code wrote, so what `simulate`
shows is what the service does. Nothing leaves the process: the sandbox
only records.

A file of events is history: `simulate` plays it in the order the events
occurred (stable for equal times), unless asked to keep the order they
arrived in, which rehearses a late feed.

`as_run(settings)` is what every simulation takes from the settings to
decide as `run` decides (staleness and settle limits, each sender's pace):
`simulate`, the what-if, the journey map and the console's draft comparison
all pass it, so they decide alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, TypedDict

from .clock import VirtualClock
from .decisions import DecisionRecord
from .event import Channel, Event
from .flows.model import Flow
from .journey import Journey
from .memory_store import MemoryStore
from .policies import DEFAULT_STALE_AFTER
from .ports import Outbox
from .runtime.dispatcher import Connector, Dispatcher
from .runtime.pacing import Pacer, PacingPlan, plan_for
from .runtime.processor import EventProcessor, EventResult
from .runtime.registry import FlowRegistry
from .runtime.rendering import Organisation
from .settle import DEFAULT_SETTLE_AFTER
from .templates import TemplateSet

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "AsRun",
    "PlayOrder",
    "Simulator",
    "as_run",
    "in_history_order",
    "out_of_order",
    "simulate",
]

# The messages come from nobody in particular: a simulation shows decisions, not bodies.
_NOBODY = Organisation("", "", "")


class AsRun(TypedDict):
    """The options of a simulation that make it decide as `run` does with the same settings."""

    stale_after: timedelta
    settle_after: timedelta
    pacing: PacingPlan


def as_run(settings: Settings) -> AsRun:
    """What `run` decides by, from `settings`: pass it to every simulation (`**as_run(...)`)."""
    return AsRun(
        stale_after=settings.stale_after,
        settle_after=settings.settle_after,
        pacing=plan_for(settings),
    )


class PlayOrder(StrEnum):
    """The order a stream is played in."""

    OCCURRED = "occurred"  # history: in the order the engine folds (time, kind, id)
    ARRIVAL = "arrival"  # as given: a late event arrives late, as from a late feed


def in_history_order(events: Iterable[Event]) -> list[Event]:
    """The events in the order they occurred, as the engine folds them.

    Equal times go by kind, then id (`Event.sort_key`), not by the file: any
    shuffle of a file plays the same (a booking and its cancellation stamped
    with one instant are a booking, then a cancellation).
    """
    return sorted(events, key=Event.sort_key)


def out_of_order(events: Sequence[Event]) -> int:
    """How many events occurred earlier than an event before them in `events`."""
    count = 0
    latest: datetime | None = None
    for event in events:
        if latest is not None and event.occurred_at < latest:
            count += 1
        else:
            latest = event.occurred_at
    return count


class Simulator(AbstractContextManager["Simulator"]):
    """The event processor and the dispatcher on a virtual clock; sends nothing.

    Feed it events in the order to play them; each call yields the
    decisions written meanwhile. Close it (or use it as a context manager)
    to drop its store.
    """

    def __init__(
        self,
        flows: Mapping[str, Flow],
        clock: VirtualClock,
        templates: TemplateSet,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        settle_after: timedelta = DEFAULT_SETTLE_AFTER,
        org: Organisation = _NOBODY,
        pacing: PacingPlan | None = None,
    ) -> None:
        self.clock = clock
        self.store = MemoryStore()
        self.flows = FlowRegistry.of(flows)
        self.processor = EventProcessor(self.store, self.flows, clock, settle_after=settle_after)
        self.dispatcher = Dispatcher(
            store=self.store,
            flows=self.flows,
            templates=templates,
            connectors=_sandbox(self.store, clock),
            clock=clock,
            org=org,
            owner="simulate",
            stale_after=stale_after,
            # Only retries draw from it, and the sandbox never asks for one; seeded
            # all the same, so that a simulation is the same every time.
            rng=random.Random(0),
            # Paced as `run` paces the same senders (`pacing.plan_for`).
            pacer=Pacer(self.store, pacing) if pacing and pacing.senders else None,
        )
        self.rejected: list[EventResult] = []
        self._position = 0

    def feed(self, event: Event) -> Iterator[DecisionRecord]:
        """Dispatch what fell due before the event, move the clock to it, then process it.

        A message due at the very instant of the event waits for it: what the
        event says (a cancellation) is known before that message goes out. An
        event that arrives late (it occurred before the clock) is processed
        when it arrives, as the service would. Events that arrive at one
        instant arrive together: nothing is dispatched between them, not even
        what one of them made due in the past.
        """
        arrival = max(event.occurred_at, self.clock.now())
        if arrival > self.clock.now():
            self._dispatch_due(arrival, inclusive=False)
        self.clock.move_to(event.occurred_at)
        self.rejected += [r for r in self.processor.process([event]) if r.status == "rejected"]
        return self._decisions()

    def run_until(self, until: datetime | None) -> Iterator[DecisionRecord]:
        """Dispatch every message due at or before `until` (all of them, if None)."""
        self._dispatch_due(until, inclusive=True)
        if until is not None:
            self.clock.move_to(until)
        return self._decisions()

    @property
    def journeys(self) -> dict[tuple[str, str], Journey]:
        """Each patient's journey per flow, as the store holds it now."""
        return {
            (journey.patient_id, journey.flow_id): journey
            for flow_id in self.flows.current
            for _, journey in self.store.flow_journeys(flow_id)
        }

    def close(self) -> None:
        self.store.purge()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _dispatch_due(self, instant: datetime | None, *, inclusive: bool) -> None:
        """Jump from one due message to the next, dispatching, up to `instant`."""
        while (due := self.store.next_due()) is not None:
            if instant is not None and (due > instant or (due == instant and not inclusive)):
                return
            self.clock.move_to(due)
            handled = 0
            while batch := self.dispatcher.tick():
                handled += batch
            if handled == 0:
                return  # due but not claimable (held): waiting longer would change nothing

    def _decisions(self) -> Iterator[DecisionRecord]:
        records, self._position = self.store.audit_after(self._position)
        return iter(records)


def _sandbox(store: Outbox, clock: VirtualClock) -> dict[Channel, Connector]:
    # Imported here, as the service does: connectors depend on the runtime.
    from connectors.sandbox import SandboxConnector

    return {channel: SandboxConnector(store, channel, clock) for channel in Channel}


def simulate(
    events: Iterable[Event],
    flows: Mapping[str, Flow],
    templates: TemplateSet,
    until: datetime | None = None,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    settle_after: timedelta = DEFAULT_SETTLE_AFTER,
    order: PlayOrder = PlayOrder.OCCURRED,
    pacing: PacingPlan | None = None,
    on_played: Callable[[Event], None] | None = None,
) -> Iterator[DecisionRecord]:
    """Run a whole stream and yield its decisions; the clock starts at the first event played.

    Events that occurred after `until` are not played. `on_played` is called
    after each event is played (a progress bar's hook).
    """
    played = in_history_order(events) if order is PlayOrder.OCCURRED else list(events)
    if not played:
        return
    clock = VirtualClock(played[0].occurred_at)
    with Simulator(
        flows, clock, templates, stale_after=stale_after, settle_after=settle_after, pacing=pacing
    ) as simulator:
        for event in played:
            if until is not None and event.occurred_at > until:
                if order is PlayOrder.OCCURRED:
                    break
                continue
            yield from simulator.feed(event)
            if on_played is not None:
                on_played(event)
        yield from simulator.run_until(until)
