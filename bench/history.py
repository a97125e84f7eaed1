"""Long histories: the cost of one event at 10 and at 5,000 events of one patient's history.

The history is a dialysis-like patient on the cardiology-consult flow: a
session booked every two or three days (often before the previous one is
over, so episodes overlap), checked in and completed; now and then an intake
form, a reschedule, a no-show followed by a rebooking; every session is an
episode that ends and a new one starts. Events arrive in the order they
occurred.

Two measurements, each the median of --runs runs:

1. engine: `advance()` then `settle()` (30 days), as the processor runs
   them. The journey after `n` events is built once; then the next --next
   events are applied to it in sequence, --repeat times over, and the cost
   per event is the mean (no parsing, no I/O);
2. processor: `EventProcessor` with a SQLite store in a temporary
   directory. The first `n` events go in batches of 500; then the next
   --next events go one batch each, as a live feed delivers them, and the
   cost per event is the mean of those.

Prints the cost per event at each history length, the ratio of the longest
to the shortest (target: 1.5 or less), and of the longest to the middle one:
past the settle window (a month of sessions, about 60 events) a journey is
bounded, so that one should be about 1 whatever the history.

    python bench/history.py [--runs 3] [--short 10] [--middle 1000] [--long 5000] [--next 30]
        [--repeat 40] [--sections engine,processor]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.clock import VirtualClock
from orchestrator.engine import advance
from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows import Flow, load_flows
from orchestrator.journey import Journey
from orchestrator.runtime.processor import EventProcessor
from orchestrator.runtime.registry import FlowRegistry
from orchestrator.settle import DEFAULT_SETTLE_AFTER, settle
from orchestrator.store import SqlStore, connect, upgrade

ROOT = Path(__file__).resolve().parent.parent
FLOW_ID = "cardiology-consult"
START = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
PATIENT = {
    "id": "p-dialysis",
    "phone": "+15555550142",
    "email": "patient@example.org",
    "language": "en",
    "timezone": "America/Chicago",
}


def history(total: int) -> list[Event]:
    """`total` events of one patient, in the order they occurred."""
    events: list[dict[str, Any]] = []

    def add(kind: str, at: datetime, appointment: str, start: datetime | None = None) -> None:
        events.append(
            {
                "id": f"evt-{len(events):06d}",
                "type": kind,
                "occurred_at": at.isoformat(),
                "source": "ehr",
                "patient": PATIENT,
                "appointment": {
                    "id": appointment,
                    "start": start.isoformat() if start else None,
                    "service": "cardiology.consult",
                },
            }
        )

    session = START
    booked_at = START - timedelta(days=2)
    n = 0
    while len(events) < total:
        appointment = f"a-{n:05d}"
        add("appointment.booked", booked_at, appointment, session)
        if n % 4 == 0:
            add("intake.completed", booked_at + timedelta(hours=3), appointment)
        if n % 10 == 3:
            session += timedelta(hours=2)
            add("appointment.rescheduled", booked_at + timedelta(hours=5), appointment, session)
        if n % 15 == 7:
            add("appointment.no_show", session + timedelta(minutes=30), appointment)
            session += timedelta(days=1)
            add("appointment.booked", session - timedelta(hours=20), appointment, session)
        add("appointment.checked_in", session - timedelta(minutes=10), appointment)
        # The next session is booked at the chair, before this one is over.
        booked_at = session + timedelta(hours=1)
        add("appointment.completed", session + timedelta(hours=4), appointment)
        session += timedelta(days=2 if n % 3 else 3)
        n += 1
    parsed = sorted((parse_event(e) for e in events), key=Event.sort_key)
    return parsed[:total]


def engine_cost(flow: Flow, events: list[Event], n: int, following: int, repeat: int) -> float:
    """Seconds per event through `advance()` for a journey of `n` events."""
    journey = Journey.start(PATIENT["id"], flow.id)
    for event in events[:n]:
        journey = advance(journey, event, flow, event.occurred_at).journey
        journey = settle(journey, flow, event.occurred_at, DEFAULT_SETTLE_AFTER).journey
    nexts = events[n : n + following]
    started = time.perf_counter()
    for _ in range(repeat):
        # The next events in sequence, each on the journey the one before left.
        after = journey
        for event in nexts:
            after = advance(after, event, flow, event.occurred_at).journey
            after = settle(after, flow, event.occurred_at, DEFAULT_SETTLE_AFTER).journey
    return (time.perf_counter() - started) / (repeat * len(nexts))


def processor_cost(flow: Flow, events: list[Event], n: int, following: int) -> float:
    """Seconds per event through the processor and a SQLite store, after `n` events."""
    with tempfile.TemporaryDirectory() as directory:
        engine = connect(f"sqlite:///{Path(directory) / 'history.db'}")
        upgrade(engine)
        clock = VirtualClock(events[0].occurred_at)
        processor = EventProcessor(SqlStore(engine), FlowRegistry.of({flow.id: flow}), clock)
        for start in range(0, n, 500):
            batch = events[start : min(start + 500, n)]
            clock.move_to(max(clock.now(), batch[-1].occurred_at))
            processor.process(batch)
        elapsed = 0.0
        for event in events[n : n + following]:
            clock.move_to(max(clock.now(), event.occurred_at))
            started = time.perf_counter()
            processor.process([event])
            elapsed += time.perf_counter() - started
        engine.dispose()
    return elapsed / following


def report(
    name: str, measure: Callable[[int], float], short: int, middle: int, long: int, runs: int
) -> None:
    lengths = (short, middle, long)
    costs: dict[int, list[float]] = {n: [] for n in lengths}
    for run in range(1, runs + 1):
        # Interleaved, so all lengths share the machine's noise.
        for n in lengths:
            costs[n].append(measure(n))
        print(
            f"{name} run {run}: "
            + ", ".join(f"{costs[n][-1] * 1000:.3f} ms/event at {n} events" for n in lengths)
        )
    at = {n: statistics.median(costs[n]) for n in lengths}
    print(
        f"{name}: median {at[short] * 1000:.3f} ms per event at {short} events of history, "
        f"{at[middle] * 1000:.3f} ms at {middle}, {at[long] * 1000:.3f} ms at {long}; "
        f"ratio {long}/{short} {at[long] / at[short]:.2f} (target 1.5 or less), "
        f"ratio {long}/{middle} {at[long] / at[middle]:.2f} (growth past the settle window) "
        f"over {runs} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--middle", type=int, default=1000)
    parser.add_argument("--long", type=int, default=5000)
    parser.add_argument("--next", type=int, default=30, dest="following")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--sections", default="engine,processor")
    args = parser.parse_args()
    # The first `n` events of each run arrive as one late history: every one of
    # them is noted as beyond the horizon, which is not what is measured here.
    logging.getLogger("orchestrator.runtime.processor").setLevel(logging.ERROR)
    flow = load_flows([ROOT / "flows"]).flows[FLOW_ID]
    events = history(args.long + args.following)
    sections = set(args.sections.split(","))
    if "engine" in sections:
        report(
            "engine advance() + settle()",
            lambda n: engine_cost(flow, events, n, args.following, args.repeat),
            args.short,
            args.middle,
            args.long,
            args.runs,
        )
    if "processor" in sections:
        report(
            "processor + SQLite",
            lambda n: processor_cost(flow, events, n, args.following),
            args.short,
            args.middle,
            args.long,
            args.runs,
        )


if __name__ == "__main__":
    main()
