"""`orchestrator convert`: what a file of HL7 v2 messages or FHIR resources becomes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from tests.connectors.hl7_samples import SAMPLES, sample, with_field
from tests.samples import ROOT

runner = CliRunner()
FHIR = ROOT / "tests" / "data" / "fhir"


def hl7_file(tmp_path: Path, *messages: bytes) -> Path:
    path = tmp_path / "feed.hl7"
    path.write_bytes(b"\n".join(messages))
    return path


def test_every_hl7_sample_becomes_one_event_line(tmp_path: Path) -> None:
    path = hl7_file(tmp_path, *(sample(n) for n in SAMPLES))
    result = runner.invoke(app, ["convert", "--from", "hl7v2", str(path)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "patient.admitted",
        "patient.discharged",
        "appointment.booked",
        "appointment.rescheduled",
        "appointment.cancelled",
    ]


def test_a_bad_message_is_named_by_index_line_segment_and_field_and_the_rest_still_convert(
    tmp_path: Path,
) -> None:
    bad = with_field(sample("SIU-S13-01.hl7"), "PID", 3, "")
    path = hl7_file(tmp_path, sample("SIU-S12-01.hl7"), bad.replace(b"\r", b"\n"))
    result = runner.invoke(app, ["convert", "--from", "hl7v2", str(path)])
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    line = sample("SIU-S12-01.hl7").count(b"\n") + 2  # the file has no final newline
    assert f"{path}: message 2 (line {line}): PID-3.1: no patient identifier" in result.stderr


def test_times_without_offset_convert_with_the_timezone_option(tmp_path: Path) -> None:
    raw = with_field(with_field(sample("SIU-S12-01.hl7"), "MSH", 7, "20260302090000"), "TQ1", 7, "")
    path = hl7_file(tmp_path, raw)
    failed = runner.invoke(app, ["convert", "--from", "hl7v2", str(path)])
    assert failed.exit_code == 1 and "MSH-7" in failed.stderr
    result = runner.invoke(
        app, ["convert", "--from", "hl7v2", "--timezone", "America/Chicago", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["occurred_at"] == "2026-03-02T15:00:00+00:00"


def test_fhir_resources_and_bundles_convert(tmp_path: Path) -> None:
    appointment = runner.invoke(
        app, ["convert", "--from", "fhir", str(FHIR / "Appointment-example.json")]
    )
    assert appointment.exit_code == 0, appointment.output
    assert json.loads(appointment.stdout)["type"] == "appointment.booked"
    bundle = runner.invoke(
        app, ["convert", "--from", "fhir", str(FHIR / "Bundle-bundle-transaction.json")]
    )
    assert (bundle.exit_code, bundle.stdout) == (0, "")  # no Appointment or Encounter in it


def test_a_bad_fhir_resource_is_named_by_fhirpath(tmp_path: Path) -> None:
    data = json.loads((FHIR / "Encounter-home.json").read_text())
    data["status"] = "planned"
    path = tmp_path / "resources.ndjson"
    path.write_text(
        (FHIR / "Appointment-example.json").read_text().replace("\n", " ")
        + "\n"
        + json.dumps(data)
        + "\n"
    )
    result = runner.invoke(app, ["convert", "--from", "fhir", str(path)])
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    assert "resource 2 (line 2): Encounter.status: status 'planned' is not mapped" in result.stderr


def test_the_console_script_converts(tmp_path: Path) -> None:
    path = hl7_file(tmp_path, sample("SIU-S12-01.hl7"))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "orchestrator"),
            "convert",
            "--from",
            "hl7v2",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "hl7:SCHApp@GHHSFacility:MSG00012:S12"
