"""`orchestrator flows preview` (and what `flows validate` says of a long Spanish SMS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.store import SqlStore, TestSendLedger, connect, upgrade

runner = CliRunner(env={"FORCE_COLOR": None, "COLUMNS": "200"})


@pytest.fixture
def shipped(root: Path) -> list[str]:
    return ["--flows", str(root / "flows"), "--templates", str(root / "templates")]


def test_preview_prints_a_table_with_segments_encoding_and_forcing_characters(
    shipped: list[str],
) -> None:
    result = runner.invoke(
        app,
        [
            "flows",
            "preview",
            "knee-replacement",
            "--message",
            "consult_rescheduled",
            "--language",
            "es",
            "--format",
            "table",
            *shipped,
        ],
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    sms = next(line for line in lines if "consult_rescheduled" in line and "sms" in line)
    assert "UCS-2" in sms and "'á'@33" in sms and "│ 2 " in sms
    assert "GSM-7 form (1 segment(s)):" in result.stdout
    assert any("consult_rescheduled" in line and "email" in line for line in lines)
    assert "Subject: Su cita cambió" in result.stdout


def test_preview_prints_json_for_scripts(shipped: list[str]) -> None:
    result = runner.invoke(
        app,
        ["flows", "preview", "knee-replacement", "--channel", "sms", "--format", "json", *shipped],
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["flow"], data["version"]) == ("knee-replacement", 1)
    assert {m["channel"] for m in data["messages"]} == {"sms"}
    assert {m["language"] for m in data["messages"]} == {"en", "es"}
    rescheduled = next(
        m
        for m in data["messages"]
        if m["message_id"] == "consult_rescheduled" and m["language"] == "es"
    )
    assert rescheduled["sms"]["encoding"] == "ucs2"
    assert [f["character"] for f in rescheduled["sms"]["forcing"]] == ["á"]
    assert rescheduled["sms"]["suggestion_segments"] == 1


def test_preview_without_a_terminal_defaults_to_json(shipped: list[str]) -> None:
    result = runner.invoke(
        app, ["flows", "preview", "cardiology-consult", "--message", "referral_welcome", *shipped]
    )

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["messages"]) == 4


def test_preview_takes_a_flow_file(root: Path) -> None:
    result = runner.invoke(
        app,
        [
            "flows",
            "preview",
            str(root / "flows/imaging-referral.yaml"),
            "--message",
            "prep_instructions",
            "--templates",
            str(root / "templates"),
            "--format",
            "json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flow"] == "imaging-referral"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["nope"], "no flow 'nope' in"),
        (["knee-replacement", "--message", "nope"], "flow knee-replacement: no message 'nope'"),
        (["knee-replacement", "--language", "fr"], "language 'fr' is not one of en, es"),
    ],
)
def test_preview_of_what_is_not_there_exits_1(
    shipped: list[str], arguments: list[str], error: str
) -> None:
    result = runner.invoke(app, ["flows", "preview", *arguments, *shipped])

    assert result.exit_code == 1
    assert error in result.stderr


def test_a_test_send_needs_a_message(shipped: list[str]) -> None:
    result = runner.invoke(
        app, ["flows", "preview", "knee-replacement", "--send-to-test", *shipped]
    )

    assert result.exit_code == 2
    assert "--send-to-test needs --message" in result.stderr


def test_a_test_send_without_a_test_phone_is_refused(shipped: list[str], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "flows",
            "preview",
            "knee-replacement",
            "--message",
            "consult_rescheduled",
            "--send-to-test",
            "--db",
            f"sqlite:///{tmp_path / 'o.db'}",
            *shipped,
        ],
    )

    assert result.exit_code == 1
    assert "test send: no test recipient for sms: set ORCHESTRATOR_TEST_PHONE" in result.stderr
    assert not (tmp_path / "o.db").exists()


def test_a_test_send_goes_through_the_sandbox_and_is_recorded_as_a_test(
    shipped: list[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    upgrade(connect(url))

    result = runner.invoke(
        app,
        [
            "flows",
            "preview",
            "knee-replacement",
            "--message",
            "consult_rescheduled",
            "--language",
            "es",
            "--send-to-test",
            "--format",
            "json",
            "--db",
            url,
            *shipped,
        ],
        env={"ORCHESTRATOR_TEST_PHONE": "+1 555 555 0100"},
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [message] = data["messages"]
    [sent] = data["test_sends"]
    assert (sent["to"], sent["channel"], sent["language"]) == ("+15555550100", "sms", "es")
    assert sent["body"] == message["body"] and sent["provider_id"].startswith("sandbox-")
    store = SqlStore(connect(url))
    assert [s.key for s in TestSendLedger(store.transactions).test_sends()] == [sent["key"]]
    assert [e.key for e in store.outbox()] == [sent["key"]]
    assert store.messages() == [] and store.audit() == []


def test_validate_names_the_characters_that_made_a_spanish_sms_too_long(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows/tiny.yaml").write_text(
        "id: tiny\nversion: 1\ntitle: Tiny\ntimezone: America/Chicago\ndefault_language: es\n"
        "languages: [es]\nstarts_on: [appointment.booked]\nstages:\n  - id: booked\n"
        "    name: Booked\n    category: access\n    enter_on: [appointment.booked]\n"
        "    messages:\n      - id: reminder\n        template: reminder\n"
        "        channels: [sms]\n        at: appointment.start - 24h\n",
        encoding="utf-8",
    )
    template = tmp_path / "templates/sms/es/reminder.j2"
    template.parent.mkdir(parents=True)
    # GSM-7 but for the date: as sent for a Saturday ("sáb 26 sept") with the
    # portal's link, 167 UCS-2 units, three segments; on a Wednesday two of GSM-7.
    template.write_text(
        "{{ org.name }}: su cita es el {{ appointment.when }}. Traiga su ID, la tarjeta del "
        "seguro y la lista de sus medicamentos. Mapa: {{ links.directions }}",
        encoding="utf-8",
    )

    result = runner.invoke(
        app,
        ["flows", "validate", str(tmp_path / "flows"), "--templates", str(tmp_path / "templates")],
    )

    assert result.exit_code == 1
    assert (
        "template sms/es/reminder.j2 renders to 3 SMS segments for the patient "
        "(sample date Sat 26 Sep 2026); at most 2 allowed; UCS-2 because of 'á'; "
        "without them (GSM-7: 'á'->'a') it would take 2 segment(s)"
    ) in result.stderr


def test_preview_runs_as_the_console_script(root: Path, tmp_path: Path) -> None:
    executable = Path(sys.executable).parent / "orchestrator"

    completed = subprocess.run(
        [
            str(executable),
            "flows",
            "preview",
            "cardiology-consult",
            "--message",
            "referral_welcome",
            "--language",
            "es",
            "--channel",
            "sms",
            "--flows",
            str(root / "flows"),
            "--templates",
            str(root / "templates"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    [message] = json.loads(completed.stdout)["messages"]
    assert message["sms"]["encoding"] == "gsm7"
