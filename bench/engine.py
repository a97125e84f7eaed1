"""Engine throughput: events per second through `advance()` with the shipped flows.

The sample streams in samples/events/ are replicated with fresh patient,
event, appointment and encounter ids until there are --events events; the
events are parsed once up front, then timed through routing and `advance()`
only (no parsing, no I/O), on one core. Prints each run, the median of 3 and
the µs per decision (one `advance()` call; an event is routed to every flow
that reads its type).

With `--baseline REV` the same stream runs through this tree's engine and
through REV's (a temporary `git worktree` of REV, removed at the end), each in
a subprocess of its own that parses the stream with its own tree's parser,
alternately (new, old, new, old, ...): the figures are comparable only side
by side, on a shared machine.

With `--gc-tuned new` (or `both`) the timed process applies the garbage
collector settings the service, worker and simulate apply after start-up
(orchestrator/gc_tuning.py, loaded by path so a baseline tree need not have
it): `new` measures what the processes gain, `both` the engine alone.

    python bench/engine.py [--events 60000] [--runs 3] [--baseline c56269c]
        [--gc-tuned {none,new,both}]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from samples import load_samples, stream  # bench/samples.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def build_stream(total: int) -> list[Any]:
    """`total` events: the samples, copy after copy, parsed once up front."""
    from orchestrator.event_schema import parse_event

    events = stream(load_samples())
    return [parse_event(next(events)) for _ in range(total)]


def run_once(events: list[Any], flows: list[Any]) -> tuple[float, int, int]:
    """Route and advance every event: (seconds, actions, decisions).

    Only `route`, `advance` and `Journey.start` are used, whose signatures
    every tree the baseline may name shares.
    """
    from orchestrator.engine import advance, route
    from orchestrator.journey import Journey

    journeys: dict[tuple[str, str], Any] = {}
    actions = decisions = 0
    started = time.perf_counter()
    for event in events:
        for flow in route(event, flows):
            key = (event.patient.id, flow.id)
            journey = journeys.get(key) or Journey.start(event.patient.id, flow.id)
            decision = advance(journey, event, flow, event.occurred_at)
            journeys[key] = decision.journey
            actions += len(decision.actions)
            decisions += 1
    return time.perf_counter() - started, actions, decisions


def load_shipped_flows(root: Path) -> list[Any]:
    from orchestrator.flows import load_flows

    return list(load_flows([root / "flows"]).flows.values())


def tune_gc() -> None:
    """Apply this tree's orchestrator/gc_tuning.py, whichever tree is imported."""
    spec = importlib.util.spec_from_file_location("_gc_tuning", ROOT / "orchestrator/gc_tuning.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.tune_for_throughput()


def serve(events_path: Path, flows_root: Path, gc_tuned: bool) -> None:
    """The subprocess side of `--baseline`: parse once, then time one run per "run" line.

    `orchestrator` is whichever tree PYTHONPATH names; the stream and the
    flows are the caller's, so both trees decide the same events.
    """
    from orchestrator.event_schema import parse_event

    flows = load_shipped_flows(flows_root)
    with events_path.open() as lines:
        events = [parse_event(json.loads(line)) for line in lines]
    if gc_tuned:
        tune_gc()
    print("ready", flush=True)
    for command in sys.stdin:
        if command.strip() != "run":
            break
        elapsed, actions, decisions = run_once(events, flows)
        figures = {"elapsed": elapsed, "actions": actions, "decisions": decisions}
        print(json.dumps(figures), flush=True)


def _line(name: str, run: int, events: int, figures: dict[str, Any]) -> str:
    elapsed, decisions = figures["elapsed"], figures["decisions"]
    return (
        f"{name} run {run}: {events} events, {decisions} decisions, {figures['actions']} actions "
        f"in {elapsed:.3f} s = {events / elapsed:,.0f} events/s, "
        f"{elapsed / decisions * 1e6:.2f} µs per decision"
    )


def _runner(tree: Path, events_path: Path, gc_tuned: bool) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(events_path),
            "--flows-root",
            str(ROOT),
            *(["--gc-tuned", "both"] if gc_tuned else []),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit(f"the engine of {tree} did not start")
    return process


def _ask(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None
    stdin.write("run\n")
    stdin.flush()
    answer = stdout.readline()
    if not answer:
        raise SystemExit("a benchmark subprocess ended early")
    figures: dict[str, Any] = json.loads(answer)
    return figures


def _write_stream(total: int, into: IO[str]) -> None:
    events = stream(load_samples())
    for _ in range(total):
        into.write(json.dumps(next(events)) + "\n")


def compare(revision: str, total: int, runs: int, gc_tuned: str) -> None:
    """This tree against `revision`, alternately, on one stream."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        base = Path(tmp) / "baseline"
        events_path = Path(tmp) / "events.jsonl"
        with events_path.open("w") as into:
            _write_stream(total, into)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base), revision],
            check=True,
        )
        processes: list[subprocess.Popen[str]] = []
        try:
            processes = [
                _runner(ROOT, events_path, gc_tuned != "none"),
                _runner(base, events_path, gc_tuned == "both"),
            ]
            names = ("new", f"old {revision}")
            rates: dict[str, list[float]] = {name: [] for name in names}
            per_decision: dict[str, list[float]] = {name: [] for name in names}
            for run in range(1, runs + 1):
                for name, process in zip(names, processes, strict=True):
                    figures = _ask(process)
                    rates[name].append(total / figures["elapsed"])
                    per_decision[name].append(figures["elapsed"] / figures["decisions"] * 1e6)
                    print(_line(name, run, total, figures), flush=True)
        finally:
            for process in processes:
                process.communicate("stop\n")
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
            )
    new, old = (statistics.median(rates[name]) for name in names)
    for name in names:
        print(
            f"{name}: median {statistics.median(rates[name]):,.0f} events/s, "
            f"{statistics.median(per_decision[name]):.2f} µs per decision over {runs} runs"
        )
    print(f"ratio new/old: {new / old:.2f} (events/s, medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run REV's engine (a temporary git worktree) on the same stream, alternately",
    )
    parser.add_argument(
        "--gc-tuned",
        choices=("none", "new", "both"),
        default="none",
        help="apply the processes' garbage-collector settings to this tree (new) or to both",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flows-root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.flows_root, args.gc_tuned != "none")
        return
    if args.baseline is not None:
        compare(args.baseline, args.events, args.runs, args.gc_tuned)
        return
    flows = load_shipped_flows(ROOT)
    events = build_stream(args.events)
    if args.gc_tuned != "none":
        tune_gc()
    rates, action_rates, per_decision = [], [], []
    for run in range(1, args.runs + 1):
        elapsed, actions, decisions = run_once(events, flows)
        rates.append(len(events) / elapsed)
        action_rates.append(actions / elapsed)
        per_decision.append(elapsed / decisions * 1e6)
        figures = {"elapsed": elapsed, "actions": actions, "decisions": decisions}
        print(_line("", run, len(events), figures).lstrip())
    print(
        f"engine advance(): median {statistics.median(rates):,.0f} events/s, "
        f"{statistics.median(action_rates):,.0f} actions/s, "
        f"{statistics.median(per_decision):.2f} µs per decision over {args.runs} runs "
        f"({len(flows)} flows, {sum(action_rates) / sum(rates):.1f} actions per event; "
        "target 50,000 events/s)"
    )


if __name__ == "__main__":
    main()
