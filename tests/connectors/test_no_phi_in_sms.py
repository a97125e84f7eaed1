"""No diagnosis, date of birth or medical record number in an SMS body or a log line.

The sample streams run through the embedded runtime with Twilio and SendGrid
configured against the stand-ins, every event carrying clinical details of
the kind an EHR feed adds; what reached the stand-in Twilio and what was
logged must hold none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.event_schema import parse_event
from orchestrator.logs import JSONFormatter
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests.samples import ROOT, SAMPLE_FILES, sample_events
from tests.standins import ACCOUNT_SID, StandIn, sendgrid_standin, twilio_standin

START = datetime(2026, 3, 1, tzinfo=UTC)
CLINICAL = {
    "diagnosis": "Atrial fibrillation",
    "diagnosis_code": "I48.91",
    "birth_date": "1961-04-12",
    "date_of_birth": "04/12/1961",
    "mrn": "MRN-448812",
}


@pytest.fixture
def stand_ins() -> Iterator[tuple[StandIn, StandIn]]:
    with twilio_standin() as twilio, sendgrid_standin() as sendgrid:
        yield twilio, sendgrid


def test_sms_bodies_and_logs_carry_no_clinical_details(
    tmp_path: Path, stand_ins: tuple[StandIn, StandIn], caplog: pytest.LogCaptureFixture
) -> None:
    twilio, sendgrid = stand_ins
    caplog.set_level(logging.DEBUG)
    clock = VirtualClock(START)
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'store.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token="token",
        twilio_from_number="+15555550100",
        twilio_api_base=twilio.url,
        sendgrid_api_key="SG.key",
        sendgrid_sender="care@example.org",
        sendgrid_api_base=sendgrid.url,
    )
    service = EmbeddedService.build(settings, clock=clock)
    try:
        for path in SAMPLE_FILES:
            events = [
                e | {"attributes": e["attributes"] | CLINICAL} for e in sample_events(path.stem)
            ]
            service.processor.process([parse_event(e) for e in events])
        while clock.now() < START + timedelta(days=60):
            clock.advance(timedelta(hours=1))
            while service.dispatcher.tick():
                pass
    finally:
        service.dispatcher.connectors[Channel.SMS].close()  # type: ignore[attr-defined]
        service.store.engine.dispose()

    bodies = [r.form["Body"][0] for r in twilio.sends()]
    formatter = JSONFormatter()
    logs = "\n".join(formatter.format(r) for r in caplog.records)
    assert len(bodies) > 20 and sendgrid.sends()
    for value in CLINICAL.values():
        assert not [b for b in bodies if value in b], f"{value!r} in an SMS body"
        assert value not in logs, f"{value!r} in the logs"
    assert "fibrillation" not in " ".join(bodies).lower()
