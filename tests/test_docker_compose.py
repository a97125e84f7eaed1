"""docker-compose.yml: every command and setting it uses exists in the project.

No Docker engine runs here, so the file is parsed, not started: each
`orchestrator ...` command must resolve to a command of the CLI with options
it has, each `ORCHESTRATOR_*` variable must be a field of the settings class,
and the production shape (KRaft Kafka, PostgreSQL, topic job, two workers,
API) must be there with health checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from orchestrator.cli.app import app
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = sorted(name for name, s in SERVICES.items() if "build" in s)


def resolve(argv: list[str]) -> tuple[Any, list[str]]:
    """The CLI command an `orchestrator ...` argv names, and the arguments left for it.

    Typer may bring its own copy of Click, so groups are told by their `commands`.
    """
    assert argv[0] == "orchestrator", argv
    command: Any = typer.main.get_command(app)
    rest = argv[1:]
    while getattr(command, "commands", None) is not None and rest:
        found = command.commands.get(rest[0])
        assert found is not None, f"no command {rest[0]!r} in {argv}"
        command, rest = found, rest[1:]
    assert getattr(command, "commands", None) is None, f"{argv} names a group, not a command"
    return command, rest


def test_the_production_shape_is_there() -> None:
    assert {"kafka", "postgres", "topics", "worker", "dispatcher", "api"} <= set(SERVICES)
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    for name in ("kafka", "postgres", "api"):
        assert "test" in SERVICES[name]["healthcheck"], name


@pytest.mark.parametrize("service", OURS)
def test_command_exists_with_its_options(service: str) -> None:
    command, rest = resolve(SERVICES[service]["command"])
    known = {opt for param in command.params for opt in param.opts}
    given = [arg for arg in rest if arg.startswith("--")]
    assert set(given) <= known, f"{service}: unknown options {set(given) - known}"
    # And the arguments parse as the CLI would parse them.
    command.make_context(command.name, list(rest), resilient_parsing=False)


@pytest.mark.parametrize("service", OURS)
def test_every_orchestrator_variable_is_a_setting(service: str) -> None:
    fields = {f"ORCHESTRATOR_{name.upper()}" for name in Settings.model_fields}
    used = {k for k in SERVICES[service]["environment"] if k.startswith("ORCHESTRATOR_")}
    assert used, service
    assert used <= fields, f"{service}: not settings: {used - fields}"


@pytest.mark.parametrize("service", OURS)
def test_settings_read_the_services_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SERVICES[service]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.db.startswith("postgresql+psycopg://")
    assert settings.broker == "kafka://kafka:9092"


def test_workers_wait_for_the_schema_and_the_topics() -> None:
    needs = SERVICES["worker"]["depends_on"]
    for name, condition in needs.items():
        assert condition["condition"] == "service_completed_successfully", name
    assert {resolve(SERVICES[name]["command"])[0].name for name in needs} == {"upgrade", "create"}


def test_the_image_is_built_from_a_dockerfile_that_installs_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    for path in ("flows", "templates", "orchestrator", "connectors"):
        assert f"COPY {path}" in dockerfile and (ROOT / path).is_dir(), path


def test_exactly_one_kind_of_service_sends() -> None:
    # Workers and the API take events in; the dispatchers send (ORCHESTRATOR_DISPATCH).
    for name in ("worker", "api"):
        assert (
            Settings.model_validate(
                {"dispatch": SERVICES[name]["environment"]["ORCHESTRATOR_DISPATCH"]}
            ).dispatch
            is False
        ), name
    assert SERVICES["dispatcher"]["command"] == ["orchestrator", "dispatch"]
    assert "ORCHESTRATOR_DISPATCH" not in SERVICES["dispatcher"]["environment"]
