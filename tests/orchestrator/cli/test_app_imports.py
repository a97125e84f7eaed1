"""The command line starts without loading what only some commands use.

Faust, the provider SDKs, FHIR, uvicorn, FastAPI and SQLAlchemy take seconds
to import; `orchestrator --help`, `flows validate` and `simulate` use none of
them. Each case runs the Typer app in a fresh interpreter and lists the heavy
modules loaded by the end (no timings here: `bench/cli.py` measures them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Loaded only by the commands that serve, store, publish, send or convert FHIR.
HEAVY = (
    "faust",
    "aiokafka",
    "twilio",
    "sendgrid",
    "fhir.resources",
    "uvicorn",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "httpx",
)
# What a command that reads flows, templates or events needs, and `--help` does not.
PARSING = ("pydantic", "pydantic_settings", "yaml", "jinja2", "babel", "phonenumbers")

_PROBE = """
import json, sys
from orchestrator.cli.app import app
arguments = json.loads(sys.argv[1])
if arguments is not None:
    try:
        app(arguments, prog_name="orchestrator", standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after(arguments: list[str] | None) -> set[str]:
    """The modules a fresh interpreter holds after running `orchestrator ARGUMENTS` in-process
    (after only importing the app when `arguments` is None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(arguments)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return set(modules)


def heavy_in(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if name in modules)


def test_importing_the_app_loads_no_heavy_module_and_no_parser() -> None:
    assert heavy_in(loaded_after(None), HEAVY + PARSING) == []


def test_help_loads_no_heavy_module_and_no_parser() -> None:
    assert heavy_in(loaded_after(["--help"]), HEAVY + PARSING) == []


def test_help_of_every_command_group_loads_no_heavy_module() -> None:
    # Typer itself loads pydantic to parse a group's options (typer._adapters).
    ours = tuple(name for name in PARSING if not name.startswith("pydantic"))
    for group in ("flows", "db", "audit", "journey", "topics"):
        assert heavy_in(loaded_after([group, "--help"]), HEAVY + ours) == [], group


@pytest.mark.parametrize(
    ("arguments", "ran"),
    [
        (["flows", "validate", "flows/"], "orchestrator.template_check"),
        (["flows", "schema"], "orchestrator.flows.schema"),
        (
            ["simulate", "--events", "samples/events/knee-replacement.jsonl"],
            "orchestrator.simulate",
        ),
        (
            ["simulate", "--events", "samples/events/knee-replacement.jsonl", "--format", "table"],
            "orchestrator.simulate",
        ),
        (["journey", "map", "--flow", "knee-replacement"], "orchestrator.insight"),
        (
            ["convert", "tests/data/hl7v2/SIU-S12-01.hl7", "--from", "hl7v2"],
            "connectors.hl7v2",
        ),
    ],
    ids=[
        "flows-validate",
        "flows-schema",
        "simulate",
        "simulate-table",
        "journey-map",
        "convert-hl7v2",
    ],
)
def test_a_command_that_needs_no_store_or_service_loads_no_heavy_module(
    arguments: list[str], ran: str
) -> None:
    modules = loaded_after(arguments)

    assert ran in modules  # the command did run
    assert heavy_in(modules, HEAVY) == []


# What checking flows and templates needs none of: the figures and the worksheet
# (the settings read only `insight.privacy.SMALL`), the fold, the send policies
# (only `staleness.DEFAULT_STALE_AFTER`) and the ports (a preview's test send).
NOT_FOR_VALIDATE = (
    "orchestrator.insight.figures",
    "orchestrator.insight.worksheet",
    "orchestrator.fold",
    "orchestrator.settle",
    "orchestrator.policies.gate",
    "orchestrator.policies.pacing",
    "orchestrator.ports",
)


def test_flows_validate_loads_only_what_checking_flows_and_templates_needs() -> None:
    modules = loaded_after(["flows", "validate", "flows/"])

    assert "orchestrator.template_check" in modules
    assert sorted(name for name in NOT_FOR_VALIDATE if name in modules) == []
