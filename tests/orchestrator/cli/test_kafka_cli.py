"""`orchestrator worker`, `topics create` and `ingest --broker` through the Typer app."""

from __future__ import annotations

from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from orchestrator.cli.app import app
from tests.kafka_broker import running_broker

runner = CliRunner()


def test_worker_refuses_a_malformed_broker_url() -> None:
    result = runner.invoke(app, ["worker", "--broker", "http://127.0.0.1:9092"])
    assert result.exit_code == 2
    assert "expected kafka://HOST:PORT" in result.output


def test_topics_create_twice_keeps_what_exists(tmp_path: Path) -> None:
    with running_broker(tmp_path / "tansu.log") as broker:
        first = runner.invoke(
            app, ["topics", "create", "--broker", broker.url, "--partitions", "3"]
        )
        again = runner.invoke(app, ["topics", "create", "--broker", broker.url])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 5
    assert "created patient.scheduling (3 partitions)" in first.output
    assert again.exit_code == 0, again.output
    assert again.output.count("exists") == 5


def test_ingest_publishes_what_it_can_route_and_names_the_lines_it_cannot(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"id": "e1", "type": "intake.sent", "patient": {"id": "p-1"}}\n'
        "\n"
        "{not json\n"
        '{"id": "e2", "type": "patient.teleported", "patient": {"id": "p-1"}}\n'
        '{"id": "e3", "type": "consent.opted_out", "patient": {"id": "p-2"}}\n'
    )
    with running_broker(tmp_path / "tansu.log") as broker:
        created = runner.invoke(
            app, ["topics", "create", "--broker", broker.url, "--partitions", "1"]
        )
        assert created.exit_code == 0, created.output
        result = runner.invoke(app, ["ingest", str(events), "--broker", broker.url])
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            ends = consumer.end_offsets(
                [TopicPartition(t, 0) for t in ("patient.intake", "patient.messaging")]
            )
        finally:
            consumer.close()
    assert result.exit_code == 1
    assert f"{events}:3: not JSON" in result.output
    assert f"{events}:4: type: no topic for event type 'patient.teleported'" in result.output
    assert "2 published" in result.output
    assert sorted(ends.values()) == [1, 1]


def test_ingest_to_a_broker_shows_progress_on_a_terminal_and_sums_up_in_one_line(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"id": "e1", "type": "appointment.booked", "patient": {"id": "p-1"}}\n'
        '{"id": "e2", "type": "intake.sent", "patient": {"id": "p-1"}}\n'
        '{"id": "e3", "type": "patient.discharged", "patient": {"id": "p-1"}}\n'
        '{"id": "e4", "type": "consent.opted_out", "patient": {"id": "p-2"}}\n'
        "{not json\n"
    )
    with running_broker(tmp_path / "tansu.log") as broker:
        created = runner.invoke(
            app, ["topics", "create", "--broker", broker.url, "--partitions", "1"]
        )
        assert created.exit_code == 0, created.output
        piped = runner.invoke(
            app,
            ["ingest", str(events), "--broker", broker.url],
            env={"FORCE_COLOR": None, "TTY_COMPATIBLE": None},
        )
        on_terminal = runner.invoke(
            app, ["ingest", str(events), "--broker", broker.url], env={"TTY_COMPATIBLE": "1"}
        )

    assert piped.exit_code == 1
    # Longer than 80 columns, and still one line in a pipe; no progress bar there.
    [summary] = piped.stdout.splitlines()
    assert summary.startswith("4 published (1 to patient.discharge, ") and len(summary) > 80
    assert summary.endswith(", 1 unroutable")
    assert "\x1b" not in piped.output
    assert on_terminal.exit_code == 1
    assert "publishing" in on_terminal.stderr and "\x1b[" in on_terminal.stderr
