"""`orchestrator simulate` through Typer's runner, and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.builders import at, flow_data, make_event_data, make_flow, templates_for

runner = CliRunner()
DESIGN_FIELDS = {
    "patient_id",
    "flow",
    "episode",
    "stage",
    "message",
    "channel",
    "template",
    "due_at",
    "status",
    "reason",
}


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test flow, with its templates as the configured ones."""
    directory = tmp_path / "flows"
    directory.mkdir()
    (directory / "test-flow.yaml").write_text(yaml.safe_dump(flow_data()))
    templates = templates_for([make_flow()], tmp_path / "templates")
    monkeypatch.setenv("ORCHESTRATOR_TEMPLATES", str(templates.root))
    return directory


def write_events(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def booking(**kwargs: object) -> str:
    return json.dumps(
        make_event_data("appointment.booked", occurred_at=at(), start=at(days=8), **kwargs)
    )  # type: ignore[arg-type]


def test_simulate_prints_one_json_line_per_decision_with_the_design_fields(
    tmp_path: Path, flows: Path
) -> None:
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    result = runner.invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line) >= DESIGN_FIELDS for line in lines)
    assert {line["status"] for line in lines} == {"scheduled", "sent"}
    assert sorted(line["message"] for line in lines if line["status"] == "sent") == [
        "confirmation",
        "intake_nudge",
        "reminder_24h",
        "reminder_72h",
    ]


def test_simulate_table_shows_each_decision(tmp_path: Path, flows: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    result = runner.invoke(
        app, ["simulate", "--events", str(events), "--flows", str(flows), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    assert "8 message decisions" in result.stdout
    assert result.stdout.count("reminder_72h") == 2


def test_malformed_lines_are_reported_with_their_number_and_the_rest_still_runs(
    tmp_path: Path, flows: Path
) -> None:
    bad_phone = json.loads(booking(id="e-2", appointment_id="a-2"))
    bad_phone["patient"]["phone"] = "12"
    events = write_events(
        tmp_path / "events.jsonl",
        ["{not json", booking(id="e-1"), json.dumps(bad_phone), ""],
    )
    result = runner.invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 1
    assert f"{events}:1: event: not JSON" in result.stderr
    # The whole line: the bad value itself is never echoed.
    [line3] = [line for line in result.stderr.splitlines() if line.startswith(f"{events}:3:")]
    assert line3 == f"{events}:3: event e-2: patient.phone: not a possible phone number"
    assert "2 line(s) rejected" in result.stderr
    assert any(json.loads(line)["status"] == "sent" for line in result.stdout.splitlines())


def test_strict_stops_at_the_first_malformed_line(tmp_path: Path, flows: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", ["{not json", booking(id="e-1")])
    result = runner.invoke(
        app, ["simulate", "--events", str(events), "--flows", str(flows), "--strict"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "1 line(s) rejected (stopped at the first: --strict)" in result.stderr


def test_until_needs_an_offset(tmp_path: Path, flows: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    result = runner.invoke(
        app,
        [
            "simulate",
            "--events",
            str(events),
            "--flows",
            str(flows),
            "--until",
            "2026-03-05T00:00:00",
        ],
    )
    assert result.exit_code == 2
    assert "--until needs a UTC offset" in result.stderr


def test_invalid_flows_stop_the_simulation_with_their_problems(tmp_path: Path, flows: Path) -> None:
    (flows / "test-flow.yaml").write_text(yaml.safe_dump(flow_data(version=0)))
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    result = runner.invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 2
    assert (
        "test-flow.yaml:" in result.stderr
        and "version: Input should be greater than or equal to 1" in result.stderr
    )


def test_console_script_runs_a_simulation(tmp_path: Path, flows: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    script = Path(sys.executable).parent / "orchestrator"
    done = subprocess.run(
        [str(script), "simulate", "--events", str(events), "--flows", str(flows)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 8


def late_file(tmp_path: Path) -> Path:
    """Another patient's booking ten days on, then a line that happened ten days before it."""
    other = make_event_data(
        "appointment.booked",
        id="e-2",
        occurred_at=at(days=10),
        start=at(days=20),
        appointment_id="a-2",
        patient={"id": "p-2", "phone": "+15555550103", "timezone": "America/Chicago"},
    )
    booking = make_event_data("appointment.booked", id="e-1", occurred_at=at(), start=at(days=30))
    return write_events(tmp_path / "events.jsonl", [json.dumps(other), json.dumps(booking)])


def nudge_of_p1(stdout: str) -> tuple[str, str | None]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    [final] = [
        (r["status"], r["reason"])
        for r in lines
        if r["patient_id"] == "p-1"
        and r["message"] == "intake_nudge"
        and r["status"] != "scheduled"
    ]
    return final


def test_a_file_out_of_order_plays_as_history_with_a_warning_that_counts_the_late_lines(
    tmp_path: Path, flows: Path
) -> None:
    events = late_file(tmp_path)
    result = runner.invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 event(s) occurred earlier than a line before them" in result.stderr
    assert nudge_of_p1(result.stdout) == ("sent", None)


def test_arrival_order_plays_the_file_as_a_late_feed_delivers_it(
    tmp_path: Path, flows: Path
) -> None:
    events = late_file(tmp_path)
    result = runner.invoke(
        app, ["simulate", "--events", str(events), "--flows", str(flows), "--arrival-order"]
    )
    assert result.exit_code == 0, result.output
    assert "played in file order (--arrival-order)" in result.stderr
    # Known nine days after it was due: too late to send.
    assert nudge_of_p1(result.stdout) == ("expired", "stale")


def test_a_file_in_order_gets_no_warning(tmp_path: Path, flows: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [booking(id="e-1")])
    result = runner.invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_on_a_terminal_a_bar_shows_the_reading_then_the_simulation_and_the_output_is_unmoved(
    tmp_path: Path, flows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.cli.simulate as command

    monkeypatch.setattr(command, "_PROGRESS_FROM_LINES", 1)
    events = write_events(
        tmp_path / "events.jsonl", [booking(id=f"e-{n}", appointment_id=f"a-{n}") for n in range(3)]
    )
    arguments = ["simulate", "--events", str(events), "--flows", str(flows)]

    piped = runner.invoke(app, arguments, env={"FORCE_COLOR": None, "TTY_COMPATIBLE": None})
    # Standard error a terminal, standard output a pipe: `simulate ... | jq`.
    on_terminal = runner.invoke(app, arguments, env={"TTY_COMPATIBLE": "1"})

    assert piped.exit_code == on_terminal.exit_code == 0
    assert "reading" not in piped.stderr and "simulating" not in piped.stderr
    assert "reading" in on_terminal.stderr and "simulating" in on_terminal.stderr
    # The decisions still go to standard output, not through the bar onto the terminal.
    assert on_terminal.stdout == piped.stdout
    assert "confirmation" not in on_terminal.stderr
