"""Journey-map figures: how long `flow_figures` takes, and reading them from a store.

The knee-replacement sample stream is replicated --copies times with fresh ids
and simulated once. Timed, each the median of --runs: the pure figures from
the simulated journeys and decisions (episodes per second), and `measured()`
from a SQLite store the same events were ingested into (what one dashboard
page costs: the query, decoding the journeys, the figures). The machine is
shared: figures are noisy.

    python bench/insight.py [--copies 400] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.flows import load_flows
from orchestrator.insight import PatientEvent, flow_figures
from orchestrator.insight.reading import measured
from orchestrator.runtime import EventProcessor, FlowRegistry
from orchestrator.simulate import Simulator
from orchestrator.store import SqlStore, connect, upgrade
from orchestrator.templates import TemplateSet
from samples import relabel  # bench/samples.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    flows = load_flows([ROOT / "flows"]).flows
    flow = flows["knee-replacement"]
    sample = [
        json.loads(line)
        for line in (ROOT / "samples" / "events" / "knee-replacement.jsonl")
        .read_text()
        .splitlines()
        if line.strip()
    ]
    events = sorted(
        (parse_event(relabel(data, copy)) for copy in range(args.copies) for data in sample),
        key=lambda e: e.occurred_at,
    )
    templates = TemplateSet(ROOT / "templates")
    with Simulator({flow.id: flow}, VirtualClock(events[0].occurred_at), templates) as simulator:
        records = [r for e in events for r in simulator.feed(e)]
        records += list(simulator.run_until(None))
        journeys = list(simulator.journeys.values())
    seen = [PatientEvent(e.id, e.patient.id, e.type, e.occurred_at) for e in events]

    pure = []
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        figures = flow_figures(flow, journeys, records, seen)
        pure.append(time.perf_counter() - started)
        print(
            f"figures run {run}: {figures.episodes} episodes, {len(records)} decisions in {pure[-1]:.3f} s"
        )

    with tempfile.TemporaryDirectory() as directory:
        engine = connect(f"sqlite:///{Path(directory) / 'bench.db'}")
        upgrade(engine)
        store = SqlStore(engine)
        processor = EventProcessor(
            store, FlowRegistry.of({flow.id: flow}), VirtualClock(events[0].occurred_at)
        )
        for start in range(0, len(events), 500):
            processor.process(events[start : start + 500])
        stored = []
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            figures = measured(store, flow)
            stored.append(time.perf_counter() - started)
            print(
                f"store run {run}: {figures.episodes} episodes read and measured in {stored[-1]:.3f} s"
            )
        engine.dispose()
    episodes = figures.episodes
    print(
        f"flow_figures: median {statistics.median(pure):.3f} s for {episodes} episodes "
        f"({episodes / statistics.median(pure):,.0f} episodes/s); measured() from SQLite: "
        f"median {statistics.median(stored):.3f} s ({episodes / statistics.median(stored):,.0f} episodes/s)"
    )


if __name__ == "__main__":
    main()
