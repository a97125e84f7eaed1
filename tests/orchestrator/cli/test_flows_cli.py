"""`orchestrator flows validate | schema` through the Typer app, and once as the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

# FORCE_COLOR from a developer's shell would put escape codes into the output.
runner = CliRunner(env={"FORCE_COLOR": None})

TINY_FLOW = """\
id: tiny
version: 1
title: Tiny
timezone: America/Chicago
default_language: en
languages: [en]
starts_on: [appointment.booked]
stages:
  - id: booked
    name: Booked
    category: access
    enter_on: [appointment.booked]
    messages:
      - id: reminder
        template: reminder
        channels: [sms]
        at: appointment.start - 24h
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with flows/tiny.yaml and the one template it needs."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows/tiny.yaml").write_text(TINY_FLOW, encoding="utf-8")
    template = tmp_path / "templates/sms/en/reminder.j2"
    template.parent.mkdir(parents=True)
    template.write_text("{{ org.name }}: see you {{ appointment.when }}.", encoding="utf-8")
    return tmp_path


def test_validate_accepts_the_shipped_flows(root: Path) -> None:
    result = runner.invoke(
        app, ["flows", "validate", str(root / "flows"), "--templates", str(root / "templates")]
    )

    assert result.stderr == ""
    assert result.exit_code == 0
    shipped = sorted((root / "flows").glob("*.yaml"))
    assert shipped
    lines = result.stdout.splitlines()
    assert len(lines) == len(shipped)
    for path, line in zip(shipped, lines, strict=True):
        assert line.startswith(f"ok {path}: {path.stem} v"), line


def test_validate_prints_ok_with_a_summary_per_file(project: Path) -> None:
    result = runner.invoke(
        app,
        ["flows", "validate", str(project / "flows"), "--templates", str(project / "templates")],
    )

    assert result.exit_code == 0
    assert result.stdout == f"ok {project / 'flows/tiny.yaml'}: tiny v1, 1 stages, 1 messages\n"
    assert result.stderr == ""


def test_validate_reads_default_directories_from_settings(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_FLOWS", str(project / "flows"))
    monkeypatch.setenv("ORCHESTRATOR_TEMPLATES", str(project / "templates"))

    result = runner.invoke(app, ["flows", "validate"])

    assert result.exit_code == 0
    assert result.stdout.startswith(f"ok {project / 'flows/tiny.yaml'}: tiny v1")


def test_validate_lists_every_problem_of_every_file_and_exits_1(project: Path) -> None:
    flows = project / "flows"
    tiny = flows / "tiny.yaml"
    tiny.write_text(TINY_FLOW.replace("default_language: en", "default_language: fr"))
    (project / "templates/sms/en/reminder.j2").unlink()
    broken = flows / "broken.yaml"
    broken.write_text(TINY_FLOW.replace("id: tiny", "id: broken").replace("Tiny", "Tiny: again"))

    result = runner.invoke(
        app, ["flows", "validate", str(flows), "--templates", str(project / "templates")]
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{broken}:3:12: not valid YAML: mapping values are not allowed here",
        f"{tiny}:5:1 default_language: 'fr' is not in languages",
        f"{tiny}:15:9 stages[0].messages[0].template: "
        "no template 'reminder' for language 'en' on channel 'sms'",
        "3 problem(s) in 2 file(s)",
    ]


def test_validate_missing_path_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    result = runner.invoke(app, ["flows", "validate", str(missing)])

    assert result.exit_code == 2
    assert result.stderr == f"no such file or directory: {missing}\n"
    assert result.stdout == ""


def test_validate_directory_without_flows_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["flows", "validate", str(tmp_path)])

    assert result.exit_code == 1
    assert result.stderr == f"no flow files (*.yaml) in {tmp_path}\n"


def _defs_with(schema: dict[str, Any], *names: str) -> list[str]:
    return [
        key
        for key, definition in schema["$defs"].items()
        if set(names) <= set(definition.get("properties", {}))
    ]


def test_schema_prints_the_flow_json_schema() -> None:
    result = runner.invoke(app, ["flows", "schema"])

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Flow"
    assert {"id", "stages", "starts_on", "exits", "quiet_hours"} <= set(schema["properties"])
    assert {"id", "version", "title", "timezone", "starts_on", "stages"} <= set(schema["required"])
    # A message: when it is due, what sends it instead of entering the stage, what cancels it.
    (message,) = _defs_with(schema, "send_on", "cancel_on", "at", "channels", "template")
    assert {"id", "template", "channels", "at"} <= set(schema["$defs"][message]["required"])
    # The YAML spells it `from` (by alias), never the Python name `from_`.
    assert _defs_with(schema, "event", "from")
    assert not _defs_with(schema, "from_")


def test_schema_runs_as_the_console_script(tmp_path: Path) -> None:
    executable = Path(sys.executable).parent / "orchestrator"

    completed = subprocess.run(
        [str(executable), "flows", "schema"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert {"stages", "starts_on"} <= set(json.loads(completed.stdout)["properties"])
