"""The benchmarks still run: each quick one, with tiny arguments, exits 0 and prints its figures.

Benchmarks are not timed here (a timing asserted in a test is flaky on a shared
machine); this only keeps them from rotting as the code they measure changes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each: the script, tiny arguments, and a word its figures line holds.
QUICK = [
    ("engine.py", ["--events", "300", "--runs", "1"], "events/s"),
    ("engine_diff.py", ["--against", "HEAD", "--events", "300"], "byte-identical"),
    ("simulate.py", ["--repeat", "1"], "events/s"),
    (
        "history.py",
        [
            "--runs",
            "1",
            "--short",
            "5",
            "--middle",
            "20",
            "--long",
            "40",
            "--next",
            "3",
            "--repeat",
            "1",
        ],
        "ratio",
    ),
    ("insight.py", ["--copies", "2", "--runs", "1"], "episodes/s"),
    ("cli.py", ["--runs", "1"], "ratio"),
    ("render.py", ["--rounds", "1", "--repeat", "1"], "ratio"),
    (
        "channels.py",
        ["--only-pacing", "--pacing-messages", "20", "--sms-rate", "20", "--latency-ms", "0"],
        "achieved",
    ),
]


def _run(script: str, arguments: list[str], timeout: int) -> str:
    """The script's output, once it has exited 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(("script", "arguments", "figure"), QUICK, ids=[q[0] for q in QUICK])
def test_a_quick_benchmark_runs_and_prints_its_figures(
    script: str, arguments: list[str], figure: str
) -> None:
    output = _run(script, arguments, timeout=300)
    assert figure in output, output[-3000:]


def _postgresql_reachable() -> bool:
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure to connect means: not here
        return False
    finally:
        engine.dispose()


# The benchmarks that need PostgreSQL. The console's copies its slice with the
# audit's tally trigger off: the trigger it names must be the one the migrations leave.
ON_POSTGRESQL = [
    (
        "scale.py",
        ["--patients", "300", "--runs", "2", "--pending", "500", "3000"],
        (
            "events/s",
            "due-claim with     3,000 pending",
            "synthetic top-up",
            "bytes per patient",
            "measured(knee-replacement)",
        ),
    ),
    (
        "console.py",
        # One request a page: its p50 and p95 are that one timing.
        ["--episodes", "80", "--requests", "1", "--slice-copies", "1"],
        ("80 episodes", "/dashboard", "measured(knee-replacement)", "p95"),
    ),
]


@pytest.mark.parametrize(
    ("script", "arguments", "figures"), ON_POSTGRESQL, ids=[b[0] for b in ON_POSTGRESQL]
)
def test_a_postgresql_benchmark_runs_and_prints_its_figures(
    script: str, arguments: list[str], figures: tuple[str, ...]
) -> None:
    if not _postgresql_reachable():
        pytest.skip(f"PostgreSQL is not reachable: bench/{script} needs it")
    output = _run(script, arguments, timeout=600)
    for figure in figures:
        assert figure in output, output[-3000:]


def _timing() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_timing", ROOT / "bench" / "timing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benches_percentiles_are_timings_taken_by_nearest_rank() -> None:
    percentiles = _timing().percentiles
    assert percentiles([0.002]) == (2.0, 2.0)
    # Of 5 runs the p95 is the worst; of 20, the 19th; the p50 of 4 the 2nd.
    assert percentiles([0.005, 0.001, 0.004, 0.002, 0.003]) == (3.0, 5.0)
    assert percentiles([n / 1000 for n in range(1, 21)])[1] == 19.0
    assert percentiles([0.001, 0.002, 0.003, 0.004])[0] == 2.0
    with pytest.raises(ValueError, match="no timings"):
        percentiles([])
