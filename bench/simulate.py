"""How fast `simulate` plays each sample stream: events per second and seconds per stream.

    PYTHONPATH=$PWD .venv/bin/python bench/simulate.py [--repeat N]

Each stream is simulated `repeat` times (the best run counts); the first run
of the process pays for loading flows and templates, which is timed apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from orchestrator.event_schema import parse_event_json
from orchestrator.flows import load_flows
from orchestrator.runtime.rendering import Organisation
from orchestrator.settings import Settings
from orchestrator.simulate import simulate
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    started = time.perf_counter()
    templates = TemplateSet(ROOT / "templates")
    flows = load_flows(
        [ROOT / "flows"], TemplateCheck(templates, Organisation.of(Settings()))
    ).flows
    print(f"loading flows and templates: {time.perf_counter() - started:.3f} s")
    for path in sorted((ROOT / "samples" / "events").glob("*.jsonl")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        events = [parse_event_json(line) for line in lines]
        best = float("inf")
        decisions = 0
        for _ in range(repeat):
            started = time.perf_counter()
            decisions = sum(1 for _ in simulate(events, flows, templates))
            best = min(best, time.perf_counter() - started)
        print(
            f"{path.stem:28} {len(events):4d} events {decisions:4d} decisions"
            f" {best:7.3f} s {len(events) / best:9.0f} events/s"
        )


if __name__ == "__main__":
    main()
