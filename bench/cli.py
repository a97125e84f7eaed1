"""How quickly the `orchestrator` command starts, against `python -c "import typer, rich"`.

    PYTHONPATH=$PWD .venv/bin/python bench/cli.py [--runs N] [--against DIR]

Times, by wall clock, each command in a fresh subprocess: the baseline
(`import typer, rich`, what any Typer and Rich command line pays), then
`orchestrator --help`, `orchestrator flows validate flows/` and `orchestrator
simulate --events samples/events/knee-replacement.jsonl`, one after the other
in each of `runs` rounds, so that a slow spell of the machine hits them all
alike. Prints each command's median and its ratio to the baseline's median;
the target is 3x. The commands run this checkout's code (its root first on
PYTHONPATH); `--against DIR` also runs another checkout's (main's, say) in
the same rounds, for a before and after measured side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 3.0
# The console script, without its installed shim (which would import the installed checkout).
_CLI = "import sys; from orchestrator.cli import main; sys.argv[0] = 'orchestrator'; main()"
COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "flows validate flows/": ["flows", "validate", "flows/"],
    "simulate (knee-replacement)": [
        "simulate",
        "--events",
        "samples/events/knee-replacement.jsonl",
    ],
}


def _timed(argv: Sequence[str], root: Path) -> float:
    """Seconds one run takes, start to exit; a failed run ends the benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(root)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} in {root} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="rounds (each command once a round)")
    parser.add_argument("--against", type=Path, help="another checkout to time in the same rounds")
    args = parser.parse_args()
    roots = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    cases: dict[str, tuple[list[str], Path]] = {
        "python -c 'import typer, rich'": ([sys.executable, "-c", "import typer, rich"], ROOT)
    }
    for label, root in roots.items():
        for name, arguments in COMMANDS.items():
            key = f"{name} [{label}]" if len(roots) > 1 else name
            cases[key] = ([sys.executable, "-c", _CLI, *arguments], root)
    times: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(args.runs):
        for key, (argv, root) in cases.items():
            times[key].append(_timed(argv, root))
    baseline = statistics.median(next(iter(times.values())))
    for label, root in roots.items():
        print(f"{label}: {root}")
    print(f"{args.runs} runs each, alternating; median wall clock; target {TARGET:.0f}x baseline")
    for key, seconds in times.items():
        median = statistics.median(seconds)
        ratio = median / baseline
        verdict = "" if key == next(iter(times)) else ("  ok" if ratio <= TARGET else "  over")
        print(f"{key:42} {median:7.3f} s  ratio {ratio:5.1f}x{verdict}")


if __name__ == "__main__":
    main()
