"""Settings: a value that would fail every message is refused when the settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HL7_TIMEZONE", raising=False)
    assert settings_with(hl7_timezone="Europe/Paris").hl7_timezone == "Europe/Paris"
    with pytest.raises(ValidationError, match="ORCHESTRATOR_HL7_TIMEZONE"):
        settings_with(hl7_timezone="Nowhere/Special")
