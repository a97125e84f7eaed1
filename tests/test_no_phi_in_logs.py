"""No PHI in logs: the sample streams through the embedded runtime leave no contact detail in them.

Everything is logged at DEBUG and formatted by the service's own
`JSONFormatter`, then searched for every phone number and email address of a
patient or caregiver in the samples.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.logs import JSONFormatter
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests import store_reads
from tests.live import TestClient, serve, wait_until
from tests.samples import ROOT, SAMPLE_FILES, contact_details, sample_events, sample_ndjson

START = datetime(2026, 3, 1, tzinfo=UTC)
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def service(
    tmp_path: Path, clock: VirtualClock, logs: pytest.LogCaptureFixture
) -> Iterator[EmbeddedService]:
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'store.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
    )
    built = EmbeddedService.build(settings, clock=clock)
    yield built
    built.store.engine.dispose()


def as_json_lines(records: list[logging.LogRecord]) -> str:
    formatter = JSONFormatter()
    return "\n".join(formatter.format(record) for record in records)


def assert_no_contact_details(text: str) -> None:
    leaked = sorted(value for value in contact_details() if value in text)
    assert not leaked, f"contact details in the logs: {leaked}"


def test_sample_streams_through_the_runtime_leave_no_contact_details_in_the_logs(
    service: EmbeddedService, clock: VirtualClock, logs: pytest.LogCaptureFixture
) -> None:
    for path in SAMPLE_FILES:
        service.processor.process([parse_event(e) for e in sample_events(path.stem)])
    while clock.now() < START + timedelta(days=60):
        clock.advance(timedelta(hours=1))
        while service.dispatcher.tick():
            pass

    text = as_json_lines(logs.records)

    sent = service.store.message_statuses().get("sent", 0)
    assert sent > 50
    assert text.count('"event": "dispatch.sent"') == sent, "the sends were not logged"
    assert_no_contact_details(text)


def test_good_and_bad_input_through_the_api_leave_no_contact_details_in_the_logs(
    service: EmbeddedService, logs: pytest.LogCaptureFixture
) -> None:
    bad_phone = sample_events("cardiology-consult")[0]
    bad_phone["id"] = "evt-bad-phone"
    bad_phone["patient"]["phone"] = bad_phone["patient"]["phone"] + "999"
    with TestClient(create_app(service, run_dispatcher=False)) as client:
        for path in SAMPLE_FILES:
            client.post("/events", content=sample_ndjson(path.stem), headers=NDJSON)
        client.post("/events", json=bad_phone)
        client.post("/events", content=sample_ndjson("imaging-referral")[:300])
        client.post("/events", content=json.dumps(bad_phone).encode("utf-16"))
        client.get("/patients/p-cc-001/timeline")
        client.get("/outbox")

    assert len(store_reads.rejected(service.store)) == 3
    assert_no_contact_details(as_json_lines(logs.records))


def test_the_access_log_line_names_the_request_and_carries_no_body(
    service: EmbeddedService, logs: pytest.LogCaptureFixture
) -> None:
    body = sample_ndjson("cardiology-consult")
    with serve(create_app(service, run_dispatcher=False)) as url:
        response = httpx.post(f"{url}/events", content=body, headers=NDJSON)
        assert response.status_code == 202

        def access_lines() -> list[logging.LogRecord]:
            return [
                r
                for r in logs.records
                if r.name == "uvicorn.access" and "POST /events" in r.getMessage()
            ]

        [record] = wait_until(access_lines, timeout=5, what="the access log line")

    client, method, path, version, status = record.args  # type: ignore[misc]
    assert (method, path, version, status) == ("POST", "/events", "1.1", 202)
    assert record.getMessage() == f'{client} - "POST /events HTTP/1.1" 202'
    uvicorn_text = as_json_lines([r for r in logs.records if r.name.startswith("uvicorn")])
    assert "evt-cc-0001" not in uvicorn_text, "a request body is in the server's log"
    assert_no_contact_details(uvicorn_text)
