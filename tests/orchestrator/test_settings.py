"""Settings: a value that would fail every message is refused when the settings load."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.cli.options import settings_with
from orchestrator.settings import Settings


def test_an_unknown_hl7_time_zone_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HL7_TIMEZONE", "America/NewYork")
    with pytest.raises(ValidationError, match="ORCHESTRATOR_HL7_TIMEZONE"):
        Settings()


def test_a_known_hl7_time_zone_or_none_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HL7_TIMEZONE", "America/New_York")
    assert Settings().hl7_timezone == "America/New_York"
    monkeypatch.delenv("ORCHESTRATOR_HL7_TIMEZONE")
    assert Settings().hl7_timezone is None


def test_a_command_line_time_zone_is_checked_as_the_environment_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HL7_TIMEZONE", raising=False)
    assert settings_with(hl7_timezone="Europe/Paris").hl7_timezone == "Europe/Paris"
    with pytest.raises(typer.Exit) as stopped:
        settings_with(hl7_timezone="Nowhere/Special")

    assert stopped.value.exit_code == 2
    assert "ORCHESTRATOR_HL7_TIMEZONE" in capsys.readouterr().err


def test_a_bad_setting_ends_a_command_with_its_name_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HL7_TIMEZONE", "America/NewYork")

    result = CliRunner().invoke(app, ["audit", "report"])

    assert result.exit_code == 2
    assert "ORCHESTRATOR_HL7_TIMEZONE" in result.output
    assert "Traceback" not in result.output


def test_the_default_staleness_limit_is_a_day() -> None:
    assert Settings().stale_after == timedelta(hours=24)


@pytest.mark.parametrize(
    ("given", "limit"),
    [("90m", timedelta(minutes=90)), ("1d12h", timedelta(hours=36)), ("3600", timedelta(hours=1))],
)
def test_the_staleness_limit_reads_flow_durations_and_seconds(
    monkeypatch: pytest.MonkeyPatch, given: str, limit: timedelta
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_STALE_AFTER", given)
    assert Settings().stale_after == limit


@pytest.mark.parametrize("given", ["0", "30", "-1h", "8d", "3 days", ""])
def test_a_staleness_limit_that_is_not_a_sane_duration_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_STALE_AFTER", given)
    with pytest.raises(ValidationError, match="ORCHESTRATOR_STALE_AFTER"):
        Settings()
