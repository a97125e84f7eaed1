"""Settings: a value that would fail every message is refused when the settings load."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.cli.options import settings_with
from orchestrator.roles import Role
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


def test_a_lease_shorter_than_three_sandbox_sends_is_refused_naming_both_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_LEASE_SECONDS", "5")
    monkeypatch.setenv("ORCHESTRATOR_SANDBOX_LATENCY_SECONDS", "2")

    result = CliRunner().invoke(app, ["audit", "report"])

    assert result.exit_code == 2
    assert "ORCHESTRATOR_LEASE_SECONDS" in result.output
    assert "ORCHESTRATOR_SANDBOX_LATENCY_SECONDS" in result.output
    assert "Traceback" not in result.output


def test_a_lease_is_checked_against_the_timeout_of_each_channel_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_LEASE_SECONDS", "5")
    monkeypatch.setenv("ORCHESTRATOR_SANDBOX_LATENCY_SECONDS", "0.2")
    assert Settings().lease_seconds == 5  # Twilio's 10 s timeout counts only once it is used

    monkeypatch.setenv("ORCHESTRATOR_TWILIO_ACCOUNT_SID", "AC0123")
    with pytest.raises(ValidationError, match="ORCHESTRATOR_TWILIO_TIMEOUT_SECONDS"):
        Settings()
    monkeypatch.setenv("ORCHESTRATOR_LEASE_SECONDS", "30")
    assert Settings().lease_seconds == 30


@pytest.mark.parametrize("token", ["", " ", "fifteen-chars-x"])
def test_an_empty_or_short_api_token_is_refused_naming_the_setting_not_the_value(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", token)

    result = CliRunner().invoke(app, ["audit", "report"])

    assert result.exit_code == 2
    assert "ORCHESTRATOR_API_TOKEN" in result.output
    assert "at least 16" in " ".join(result.output.split())
    assert token.strip() == "" or token not in result.output
    assert "Traceback" not in result.output


def test_an_empty_api_token_does_not_open_binding_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "")

    result = CliRunner().invoke(app, ["run", "--host", "0.0.0.0"])

    assert result.exit_code == 2
    assert "ORCHESTRATOR_API_TOKEN" in result.output
    assert list(tmp_path.iterdir()) == [], "the store was opened before the refusal"


def test_an_api_token_of_16_characters_or_more_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "x" * 16)

    token = Settings().api_token

    assert token is not None and token.get_secret_value() == "x" * 16


def test_a_command_that_needs_no_store_refuses_a_short_token_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "short")

    result = CliRunner().invoke(app, ["flows", "validate"])

    assert result.exit_code == 2
    assert "ORCHESTRATOR_API_TOKEN" in result.output
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


def test_journeys_settle_after_a_month_by_default_and_read_durations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().settle_after == timedelta(days=30)
    monkeypatch.setenv("ORCHESTRATOR_SETTLE_AFTER", "90d")
    assert Settings().settle_after == timedelta(days=90)


@pytest.mark.parametrize(
    ("stale", "settle"), [("24h", "24h"), ("7d", "3d"), ("24h", "4000d"), ("24h", "soon")]
)
def test_a_settle_window_not_longer_than_the_staleness_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, stale: str, settle: str
) -> None:
    # Settling drops messages due before the horizon: they must all be stale by then.
    monkeypatch.setenv("ORCHESTRATOR_STALE_AFTER", stale)
    monkeypatch.setenv("ORCHESTRATOR_SETTLE_AFTER", settle)
    with pytest.raises(ValidationError, match="ORCHESTRATOR_SETTLE_AFTER"):
        Settings()


def test_api_tokens_map_each_token_to_its_role_and_the_api_token_is_an_admins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "a" * 16)
    monkeypatch.setenv(
        "ORCHESTRATOR_API_TOKENS", json.dumps({"o" * 16: "operations", "m" * 20: "marketing"})
    )

    assert Settings().role_tokens() == {
        "o" * 16: Role.OPERATIONS,
        "m" * 20: Role.MARKETING,
        "a" * 16: Role.ADMIN,
    }


def test_no_token_at_all_leaves_no_roles() -> None:
    assert Settings().role_tokens() == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (json.dumps({"secret-token-number-1": "superuser"}), "unknown role"),
        (json.dumps({"secret-token-number-1": 3}), "unknown role"),
        (json.dumps({"secret-tok": "admin"}), "shorter than 16"),
        (json.dumps({" secret-token-number-1": "admin"}), "surrounding spaces"),
        (json.dumps(["secret-token-number-1", "admin"]), "expected a JSON object"),
        ("secret-token-number-1=admin", "expected a JSON object"),
    ],
)
def test_bad_api_tokens_are_refused_naming_the_setting_never_the_token(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKENS", value)

    with pytest.raises(ValidationError) as raised:
        Settings()

    message = str(raised.value)
    assert "ORCHESTRATOR_API_TOKENS" in message and expected in message
    assert "secret-tok" not in message


@pytest.mark.parametrize("value", ["0", "12", "-1", "eleven"])
def test_a_small_count_threshold_outside_1_to_11_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SMALL_COUNT_THRESHOLD", value)

    with pytest.raises(ValidationError, match="small_count_threshold"):
        Settings()


def test_a_pilot_may_lower_the_small_count_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().small_count_threshold == 11
    monkeypatch.setenv("ORCHESTRATOR_SMALL_COUNT_THRESHOLD", "5")

    assert Settings().small_count_threshold == 5
