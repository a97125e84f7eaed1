"""`orchestrator journey map` and `orchestrator simulate --compare` through Typer's runner."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import dump_event, parse_event_json
from orchestrator.insight import read_csv
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import SqlStore, connect
from tests.builders import templates_for, write_templates
from tests.orchestrator.insight.stream import insight_flow, insight_flow_data, insight_stream

runner = CliRunner()


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The insight flow, with its templates as the configured ones."""
    directory = tmp_path / "flows"
    directory.mkdir()
    (directory / "insight-flow.yaml").write_text(yaml.safe_dump(insight_flow_data()))
    templates = templates_for([insight_flow()], tmp_path / "templates")
    monkeypatch.setenv("ORCHESTRATOR_TEMPLATES", str(templates.root))
    return directory


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(dump_event(e)) + "\n" for e in insight_stream()))
    return path


def test_the_map_without_figures_lists_the_flow_facts(flows: Path) -> None:
    result = runner.invoke(app, ["journey", "map", "--flow", "insight-flow", "--flows", str(flows)])

    assert result.exit_code == 0, result.output
    assert "| Awareness | Referred (`referred`) |" in result.output
    assert "`reminder_24h`: appointment.start - 1d" in result.output
    assert "Entered" not in result.output


def test_the_map_of_a_simulated_run_has_the_measured_figures_as_csv(
    flows: Path, events: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "journey",
            "map",
            "--flow",
            "insight-flow",
            "--flows",
            str(flows),
            "--events",
            str(events),
            "--format",
            "csv",
        ],
    )

    assert result.exit_code == 0, result.output
    rows = {r["stage"]: r for r in read_csv(result.output) if r["kind"] == "stage"}
    assert (rows["booked"]["entered"], rows["booked"]["dropped_off"]) == ("6", "1")


def test_the_csv_map_hides_small_counts_when_asked(flows: Path, events: Path) -> None:
    command = ["journey", "map", "--flow", "insight-flow", "--flows", str(flows)]
    command += ["--events", str(events), "--format", "csv", "--hide-small-counts"]
    result = runner.invoke(app, command)

    assert result.exit_code == 0, result.output
    rows = read_csv(result.output)
    booked = next(r for r in rows if r["kind"] == "stage" and r["stage"] == "booked")
    assert (booked["entered"], booked["dropped_off"], booked["completed"]) == ("<11", "<11", "0")
    sent = [r["sent"] for r in rows if r["kind"] == "message"]
    assert sent and all(n in {"0", "<11"} for n in sent), sent


def test_the_map_reads_the_store(flows: Path, events: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    parsed = [parse_event_json(line) for line in events.read_text().splitlines()]
    templates = tmp_path / "templates"
    write_templates(templates, ("confirmation", "intake_nudge", "reminder", "survey", "rebooking"))
    clock = VirtualClock(parsed[0].occurred_at)
    service = EmbeddedService.build(Settings(db=db, flows=flows, templates=templates), clock=clock)
    try:
        service.processor.process(parsed)
    finally:
        service.store.engine.dispose()

    result = runner.invoke(
        app,
        [
            "journey",
            "map",
            "--flow",
            "insight-flow",
            "--flows",
            str(flows),
            "--db",
            db,
            "--format",
            "mermaid",
            "--hide-small-counts",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "Booked<br>entered <11, dropped off <11" in result.output
    engine = connect(db)
    try:
        assert len(SqlStore(engine).flow_journeys("insight-flow")) == 5
    finally:
        engine.dispose()


def test_compare_over_the_stores_history_is_the_compare_of_the_same_events(
    flows: Path, events: Path, tmp_path: Path
) -> None:
    after = tmp_path / "after"
    after.mkdir()
    data = insight_flow_data(version=2)
    booked = next(s for s in data["stages"] if s["id"] == "booked")
    for message in booked["messages"]:
        if message["id"] == "reminder_24h":
            message["at"] = "appointment.start - 48h"
    booked["messages"] = [m for m in booked["messages"] if m["id"] != "intake_nudge"]
    (after / "insight-flow.yaml").write_text(yaml.safe_dump(data))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    parsed = [parse_event_json(line) for line in events.read_text().splitlines()]
    clock = VirtualClock(parsed[0].occurred_at)
    templates = Path(os.environ["ORCHESTRATOR_TEMPLATES"])
    service = EmbeddedService.build(Settings(db=db, flows=flows, templates=templates), clock=clock)
    try:
        service.processor.process(parsed)
    finally:
        service.store.engine.dispose()
    until = (max(e.occurred_at for e in parsed) + timedelta(days=30)).isoformat()
    compare = ["simulate", "--compare", str(flows), str(after), "--until", until]

    from_file = runner.invoke(app, [*compare, "--events", str(events)])
    from_store = runner.invoke(app, [*compare, "--history-days", "365", "--db", db])
    table = runner.invoke(app, [*compare, "--history-days", "365", "--db", db, "--format", "table"])
    on_terminal = runner.invoke(
        app, [*compare, "--history-days", "365", "--db", db], env={"TTY_COMPATIBLE": "1"}
    )

    assert from_file.exit_code == 0, from_file.output
    assert from_store.exit_code == 0, from_store.output
    assert from_store.output == from_file.output
    summary = json.loads(from_store.output.splitlines()[-1])
    assert summary["summary"]["removed"] == 6
    stages = {s["stage"]: s for s in summary["stages"]}
    assert stages["booked"]["removed"] == 6
    assert stages["booked"]["moved"] == summary["summary"]["moved"] > 0
    assert table.exit_code == 0
    assert "per stage" in table.output
    assert "replaying 365 day(s)" not in from_store.stderr
    assert "replaying 365 day(s)" in on_terminal.stderr
    assert on_terminal.stdout == from_store.stdout


def test_compare_over_history_needs_compare_and_no_events_file(events: Path) -> None:
    alone = runner.invoke(app, ["simulate", "--history-days", "7"])
    both = runner.invoke(
        app, ["simulate", "--history-days", "7", "--events", str(events), "--compare", ".", "."]
    )

    assert alone.exit_code == 2
    assert "--compare" in alone.output
    assert both.exit_code == 2


def test_an_unknown_flow_is_named(flows: Path) -> None:
    result = runner.invoke(app, ["journey", "map", "--flow", "nope", "--flows", str(flows)])

    assert result.exit_code == 2
    assert "no flow 'nope'" in result.output


def test_compare_shows_what_a_flow_change_moves_adds_and_removes(
    flows: Path, events: Path, tmp_path: Path
) -> None:
    after = tmp_path / "after"
    after.mkdir()
    data = insight_flow_data(version=2)
    booked = next(s for s in data["stages"] if s["id"] == "booked")
    for message in booked["messages"]:
        if message["id"] == "reminder_24h":
            message["at"] = "appointment.start - 48h"
    booked["messages"] = [m for m in booked["messages"] if m["id"] != "intake_nudge"]
    (after / "insight-flow.yaml").write_text(yaml.safe_dump(data))

    result = runner.invoke(
        app, ["simulate", "--events", str(events), "--compare", str(flows), str(after)]
    )

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    summary = lines[-1]
    changes = lines[:-1]
    removed = [c for c in changes if c["change"] == "removed"]
    moved = [c for c in changes if c["change"] == "moved"]
    assert {c["message"] for c in removed} == {"intake_nudge"}
    assert len(removed) == 6
    assert {c["message"] for c in moved} == {"reminder_24h"}
    for c in moved:
        assert c["due_before"] > c["due_after"]
    assert summary["summary"]["removed"] == 6
    assert summary["summary"]["moved"] == len(moved) > 0

    table = runner.invoke(
        app,
        [
            "simulate",
            "--events",
            str(events),
            "--compare",
            str(flows),
            str(after),
            "--format",
            "table",
        ],
    )
    assert table.exit_code == 0
    assert "6 removed" in table.output


@pytest.fixture
def paces(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The pacing plan each simulation of the test is built with."""
    from orchestrator.simulate import Simulator

    seen: list[object] = []
    built = Simulator.__init__

    def spy(self: Simulator, *args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("pacing"))
        built(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "__init__", spy)
    return seen


def test_simulate_the_map_and_the_compare_over_history_pace_as_run_does(
    flows: Path, events: Path, tmp_path: Path, paces: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.runtime.pacing import plan_for

    monkeypatch.setenv("ORCHESTRATOR_SMS_RATE", "0.5")
    as_run = plan_for(Settings())
    assert as_run.senders  # the sandbox, paced at the rate set
    db = f"sqlite:///{tmp_path / 'store.db'}"
    parsed = [parse_event_json(line) for line in events.read_text().splitlines()]
    templates = Path(os.environ["ORCHESTRATOR_TEMPLATES"])
    service = EmbeddedService.build(
        Settings(db=db, flows=flows, templates=templates), clock=VirtualClock(parsed[0].occurred_at)
    )
    try:
        service.processor.process(parsed)
    finally:
        service.store.engine.dispose()
    until = (max(e.occurred_at for e in parsed) + timedelta(days=1)).isoformat()
    commands = [
        ["simulate", "--events", str(events), "--flows", str(flows)],
        [
            "journey",
            "map",
            "--flow",
            "insight-flow",
            "--flows",
            str(flows),
            "--events",
            str(events),
        ],
        [
            "simulate",
            "--compare",
            str(flows),
            str(flows),
            "--history-days",
            "365",
            "--db",
            db,
            "--until",
            until,
        ],
    ]
    for command in commands:
        paces.clear()
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert paces and all(p == as_run for p in paces), command
