"""How quickly the `orchestrator` command starts, against `python -c "import typer, rich"`.

    PYTHONPATH=$PWD .venv/bin/python bench/cli.py [--runs N] [--against DIR]

Times, by wall clock, each command in a fresh subprocess: the baseline
(`import typer, rich`, what any Typer and Rich command line pays), then
`orchestrator --help`, `orchestrator flows validate flows/` and `orchestrator
simulate --events samples/events/knee-replacement.jsonl`, one after the other
in each of `runs` rounds, so that a slow spell of the machine hits them all
alike. `validate` and `simulate` run twice a round: with a cold template cache
(`ORCHESTRATOR_TEMPLATE_CACHE` a new empty directory: every template compiled
and written) and a warm one (a directory an earlier run filled). A last row,
"floor", imports only the libraries those two commands cannot do without
(pydantic and pydantic-settings for flows and settings, PyYAML, Jinja2's
sandbox, Babel's dates), and does nothing: no command reading flows can start
faster. Prints each row's median and its ratio to the baseline's median; the
target is 3x. The commands run this checkout's code (its root first on
PYTHONPATH); `--against DIR` also runs another checkout's (main's, say) in
the same rounds, for a before and after measured side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
# The commands that compile templates: timed with a cold and with a warm cache.
CACHED = ("flows validate flows/", "simulate (knee-replacement)")
# What `flows validate` and `simulate` import that no command line could skip.
FLOOR = "import typer, rich.console, pydantic, pydantic_settings, yaml, jinja2.sandbox, babel.dates"


def _timed(argv: Sequence[str], root: Path, cache: str) -> float:
    """Seconds one run takes, start to exit; a failed run ends the benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(root)
    env["ORCHESTRATOR_TEMPLATE_CACHE"] = cache
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
    scratch = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    # (argv, root, cache: "off", "warm" or "cold")
    cases: dict[str, tuple[list[str], Path, str]] = {
        "python -c 'import typer, rich'": (
            [sys.executable, "-c", "import typer, rich"],
            ROOT,
            "off",
        )
    }
    for label, root in roots.items():
        for name, arguments in COMMANDS.items():
            key = f"{name} [{label}]" if len(roots) > 1 else name
            argv = [sys.executable, "-c", _CLI, *arguments]
            if name in CACHED:
                cases[f"{key}, cold cache"] = (argv, root, "cold")
                cases[f"{key}, warm cache"] = (argv, root, "warm")
            else:
                cases[key] = (argv, root, "off")
    cases["floor (the libraries; see below)"] = ([sys.executable, "-c", FLOOR], ROOT, "off")
    warm = {root: scratch / f"warm-{n}" for n, root in enumerate(roots.values())}
    for root, directory in warm.items():  # filled once, before the rounds
        _timed(
            [sys.executable, "-c", _CLI, *COMMANDS["flows validate flows/"]], root, str(directory)
        )
    times: dict[str, list[float]] = {key: [] for key in cases}
    try:
        for round_ in range(args.runs):
            for n, (key, (argv, root, cache)) in enumerate(cases.items()):
                cold = str(scratch / f"{round_}-{n}")
                where = {"off": "off", "warm": str(warm[root]), "cold": cold}
                times[key].append(_timed(argv, root, where[cache]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    baseline = statistics.median(next(iter(times.values())))
    for label, root in roots.items():
        print(f"{label}: {root}")
    print(f"{args.runs} runs each, alternating; median wall clock; target {TARGET:.0f}x baseline")
    for key, seconds in times.items():
        median = statistics.median(seconds)
        ratio = median / baseline
        judged = key != next(iter(times)) and not key.startswith("floor")
        verdict = ("  ok" if ratio <= TARGET else "  over") if judged else ""
        print(f"{key:46} {median:7.3f} s  ratio {ratio:5.1f}x{verdict}")
    print(f"floor: python -c '{FLOOR}'")


if __name__ == "__main__":
    main()
