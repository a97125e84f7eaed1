"""Engine throughput: events per second through `advance()` with the shipped flows.

The sample streams in samples/events/ are replicated with fresh patient,
event, appointment and encounter ids until there are --events events; the
events are parsed once up front, then timed through routing and `advance()`
only (no parsing, no I/O), on one core. Prints each run and the median of 3.

    python bench/engine.py [--events 60000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from orchestrator.engine import advance, route
from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows import Flow, load_flows
from orchestrator.journey import Journey
from samples import load_samples, stream  # bench/samples.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def build_stream(total: int) -> list[Event]:
    """`total` events: the samples, copy after copy, parsed once up front."""
    events = stream(load_samples())
    return [parse_event(next(events)) for _ in range(total)]


def run_once(events: list[Event], flows: list[Flow]) -> tuple[float, int]:
    journeys: dict[tuple[str, str], Journey] = {}
    actions = 0
    started = time.perf_counter()
    for event in events:
        for flow in route(event, flows):
            key = (event.patient.id, flow.id)
            journey = journeys.get(key) or Journey.start(event.patient.id, flow.id)
            decision = advance(journey, event, flow, event.occurred_at)
            journeys[key] = decision.journey
            actions += len(decision.actions)
    return time.perf_counter() - started, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    flows = list(load_flows([ROOT / "flows"]).flows.values())
    events = build_stream(args.events)
    rates, action_rates = [], []
    for run in range(1, args.runs + 1):
        elapsed, actions = run_once(events, flows)
        rates.append(len(events) / elapsed)
        action_rates.append(actions / elapsed)
        print(
            f"run {run}: {len(events)} events, {actions} actions in {elapsed:.3f} s = {rates[-1]:,.0f} events/s"
        )
    print(
        f"engine advance(): median {statistics.median(rates):,.0f} events/s, "
        f"{statistics.median(action_rates):,.0f} actions/s over {args.runs} runs "
        f"({len(flows)} flows, {sum(action_rates) / sum(rates):.1f} actions per event; target 50,000 events/s)"
    )


if __name__ == "__main__":
    main()
