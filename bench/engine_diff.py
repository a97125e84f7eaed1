"""Differential check: this tree's engine decides byte for byte what REV's decides.

For speed work on the pure core (`advance`, the fold, `settle`), where every
decision must stay as it was. The shipped sample streams are replicated with
fresh ids, each copy moved by a random number of days and minutes (so times
cross daylight-saving changes and caches keyed by time see new ones) and given
a random patient time zone; the stream is then shuffled a few events at a
time, with re-deliveries, and each arrival gets a processing clock that only
moves forward (near the event, behind it, or a jump of days to months). Both
trees, each in a subprocess with its own parser, route every arrival to every
flow that reads its type, `advance` it (now and then with `may_start` or
`may_adopt` false), and `settle` each changed journey; the `repr` of every
decision and every settle is hashed. The first decision whose digests differ
is reported with both reprs.

    python bench/engine_diff.py --against REV [--events 50000] [--seed 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from samples import load_samples, relabel  # bench/samples.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
ZONES = [
    "America/Los_Angeles",
    "America/New_York",
    "America/Chicago",
    "Europe/Madrid",
    "Australia/Sydney",
    "Asia/Kolkata",
]
_TIMES = (
    ("occurred_at",),
    ("appointment", "start"),
    ("encounter", "admitted_at"),
    ("encounter", "discharged_at"),
)
AFTERS_DAYS = [1, 3, 30]


def _moved(data: dict[str, Any], by: timedelta, zone: str | None) -> dict[str, Any]:
    for path in _TIMES:
        holder = data
        for part in path[:-1]:
            holder = holder.get(part) or {}
        value = holder.get(path[-1])
        if isinstance(value, str):
            holder[path[-1]] = (datetime.fromisoformat(value) + by).isoformat()
    if zone is not None:
        data["patient"]["timezone"] = zone
    return data


def arrivals(total: int, seed: int) -> list[dict[str, Any]]:
    """`total` arrivals: each an event (JSON), the clock it is taken at, and its flags."""
    rng = random.Random(seed)
    samples = load_samples()
    events: list[dict[str, Any]] = []
    copy = 0
    while len(events) < total:
        by = timedelta(days=rng.randint(-200, 200), minutes=rng.randint(-600, 600))
        zone = rng.choice([None, *ZONES])
        events += [_moved(relabel(data, copy), by, zone) for data in samples]
        copy += 1
    events = events[:total]
    order: list[int] = []
    i = 0
    while i < len(events):
        width = rng.randint(1, 8)
        chunk = list(range(i, min(i + width, len(events))))
        rng.shuffle(chunk)
        order += chunk
        i += width
    for _ in range(total // 30):  # re-deliveries, a little later
        at = rng.randrange(len(order))
        order.insert(min(len(order), at + rng.randint(1, 40)), order[at])
    taken = []
    ahead = timedelta()
    for i in order:
        data = events[i]
        if rng.random() < 0.002:
            ahead += timedelta(hours=rng.randint(1, 90 * 24))
        occurred = datetime.fromisoformat(data["occurred_at"])
        now = occurred + ahead + timedelta(minutes=rng.randint(-2 * 24 * 60, 4 * 24 * 60))
        flags = rng.choices(["", "no_start", "no_adopt"], weights=[96, 2, 2])[0]
        taken.append({"event": data, "now": now.isoformat(), "flags": flags})
    return taken


def serve(path: Path, flows_root: Path, after_days: int) -> None:
    """The subprocess side: decide every arrival, print one digest per decision and settle."""
    from orchestrator.engine import advance, route
    from orchestrator.event_schema import parse_event
    from orchestrator.flows import load_flows
    from orchestrator.journey import Journey
    from orchestrator.settle import settle

    flows = list(load_flows([flows_root / "flows"]).flows.values())
    with path.open() as lines:
        taken = [json.loads(line) for line in lines]
    after = timedelta(days=after_days)
    journeys: dict[tuple[str, str], Any] = {}
    out = sys.stdout
    for item in taken:
        event = parse_event(item["event"])
        now = datetime.fromisoformat(item["now"])
        flags = item["flags"]
        for flow in route(event, flows):
            key = (event.patient.id, flow.id)
            before = journeys.get(key) or Journey.start(event.patient.id, flow.id)
            decision = advance(
                before,
                event,
                flow,
                now,
                may_start=flags != "no_start",
                may_adopt=flags != "no_adopt",
            )
            text = repr(decision)
            journey = decision.journey
            if journey is not before:
                settled = settle(journey, flow, now, after)
                text += "\n" + repr(settled)
                journey = settled.journey
            journeys[key] = journey
            digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
            out.write(f"{digest}\n")
            if os.environ.get("ENGINE_DIFF_SHOW") == digest:
                sys.stderr.write(text + "\n")
    out.flush()


def _run(tree: Path, path: Path, after_days: int, show: str | None = None) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(path),
            "--flows-root",
            str(ROOT),
            "--after-days",
            str(after_days),
        ],
        capture_output=True,
        text=True,
        cwd=tree,
        # One hash seed for both: a frozenset's repr (`no_start`) follows it.
        env={
            **os.environ,
            "PYTHONPATH": str(tree),
            "PYTHONHASHSEED": "0",
            "ENGINE_DIFF_SHOW": show or "",
        },
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{tree}: {result.stderr[-3000:]}")
    if show:
        return [result.stderr]
    return result.stdout.split()


def compare(revision: str, total: int, seed: int) -> int:
    with tempfile.TemporaryDirectory(prefix="engine-diff-") as tmp:
        base = Path(tmp) / "baseline"
        path = Path(tmp) / "arrivals.jsonl"
        with path.open("w") as into:
            for item in arrivals(total, seed):
                into.write(json.dumps(item) + "\n")
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base), revision],
            check=True,
        )
        try:
            after_days = AFTERS_DAYS[seed % len(AFTERS_DAYS)]
            new = _run(ROOT, path, after_days)
            old = _run(base, path, after_days)
            if len(new) != len(old):
                print(f"MISMATCH: {len(new)} decisions against {len(old)}")
                return 1
            for n, (a, b) in enumerate(zip(new, old, strict=True)):
                if a != b:
                    print(
                        f"MISMATCH at decision {n} of {len(new)}; new, then old, from where they part:"
                    )
                    [new_text] = _run(ROOT, path, after_days, show=a)
                    [old_text] = _run(base, path, after_days, show=b)
                    at = next(
                        (
                            i
                            for i, (x, y) in enumerate(zip(new_text, old_text, strict=False))
                            if x != y
                        ),
                        min(len(new_text), len(old_text)),
                    )
                    for text in (new_text, old_text):
                        print(f"...{text[max(0, at - 400) : at + 400]}...")
                    return 1
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
            )
    print(
        f"{len(new)} decisions (each with its settle) byte-identical to {revision} "
        f"({total} events, seed {seed}, settle after {after_days} d)"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", default="HEAD")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flows-root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--after-days", type=int, default=30, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.flows_root, args.after_days)
        return
    raise SystemExit(compare(args.against, args.events, args.seed))


if __name__ == "__main__":
    main()
