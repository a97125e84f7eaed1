"""FHIR R4 inbound over HTTP: resources and Bundles in, events committed, OperationOutcome out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import InboundArchive
from tests import store_reads
from tests.inbound_service import build_service
from tests.live import TestClient
from tests.samples import ROOT

DATA = ROOT / "tests" / "data" / "fhir"
NOW = datetime(2013, 12, 1, tzinfo=UTC)
TOKEN = "t0ken-for-the-tests"


def resource(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


@pytest.fixture
def service(tmp_path: Path) -> Iterator[EmbeddedService]:
    built = build_service(
        Settings(
            db=f"sqlite:///{tmp_path / 'store.db'}",
            flows=ROOT / "flows",
            templates=ROOT / "templates",
            inbound_services={"52": "cardiology.consult"},
            api_token=TOKEN,
        ),
        VirtualClock(NOW),
    )
    yield built
    built.store.engine.dispose()


@pytest.fixture
def client(service: EmbeddedService) -> Iterator[TestClient]:
    with TestClient(
        create_app(service, run_dispatcher=False),
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


def test_the_sample_appointment_is_taken_and_starts_a_journey(
    client: TestClient, service: EmbeddedService
) -> None:
    response = client.post("/fhir/Appointment", json=resource("Appointment-example.json"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith(
        "accepted: event fhir:Appointment/example:booked:"
    )
    assert [e.flow for e in service.store.episodes("example")] == ["cardiology-consult"]
    [kept] = InboundArchive(service.store).messages()
    assert kept["protocol"] == "fhir" and kept["status"] == "accepted"


def test_the_same_appointment_posted_twice_is_a_duplicate(client: TestClient) -> None:
    client.post("/fhir/Appointment", json=resource("Appointment-example.json"))
    again = client.post("/fhir/Appointment", json=resource("Appointment-example.json"))
    assert again.json()["issue"][0]["diagnostics"].startswith("duplicate: ")


def test_the_sample_encounter_is_a_discharge(client: TestClient, service: EmbeddedService) -> None:
    response = client.post("/fhir/Encounter", json=resource("Encounter-home.json"))
    assert response.status_code == 200, response.text
    [kept] = InboundArchive(service.store).messages()
    assert kept["event_id"].startswith("fhir:Encounter/home:finished:")


@pytest.mark.parametrize(
    ("route", "change", "status", "expression", "code"),
    [
        ("/fhir/Appointment", {"start": "next tuesday"}, 400, "Appointment.start", "invalid"),
        ("/fhir/Appointment", {"status": "proposed"}, 422, "Appointment.status", "not-supported"),
        (
            "/fhir/Appointment",
            {"participant": [{"status": "accepted", "actor": {"reference": "Location/1"}}]},
            400,
            "Appointment.participant",
            "required",
        ),
        ("/fhir/Appointment", {"participant": None}, 400, "Appointment.participant", "required"),
        (
            "/fhir/Encounter",
            {"resourceType": "Appointment"},
            400,
            "Appointment.resourceType",
            "structure",
        ),
    ],
)
def test_what_cannot_be_used_is_an_operation_outcome_with_the_fhirpath(
    client: TestClient,
    service: EmbeddedService,
    route: str,
    change: dict[str, Any],
    status: int,
    expression: str,
    code: str,
) -> None:
    body = resource("Appointment-example.json")
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert (issue["severity"], issue["code"], issue["expression"]) == ("error", code, [expression])
    [rejected] = store_reads.rejected(service.store)
    assert rejected.source == "fhir"
    assert json.loads(rejected.body) == body
    assert InboundArchive(service.store).messages()[0]["status"] == "rejected"


def test_a_body_that_is_not_json_is_a_400_outcome(client: TestClient) -> None:
    response = client.post("/fhir/Appointment", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == "not JSON (at position 1)"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 200_000, "too-costly"),  # deeper than the JSON parser's stack
        (b'{"resourceType": "Appointment", "id": ' + b"1" * 5000 + b"}", "structure"),
    ],
)
@pytest.mark.parametrize("route", ["/fhir/Appointment", "/fhir"])
def test_json_that_cannot_be_read_is_a_400_outcome(
    client: TestClient, route: str, body: bytes, code: str
) -> None:
    response = client.post(route, content=body)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", code)


def test_the_fhir_routes_need_the_token(service: EmbeddedService) -> None:
    with TestClient(create_app(service, run_dispatcher=False)) as anonymous:
        response = anonymous.post("/fhir/Appointment", json=resource("Appointment-example.json"))
    assert response.status_code == 401


def test_the_sample_transaction_bundle_has_nothing_to_map_and_says_so_per_entry(
    client: TestClient,
) -> None:
    response = client.post("/fhir", json=resource("Bundle-bundle-transaction.json"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["200 OK"] * 10


def _bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)],
    }


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "example",
        "telecom": [
            {"system": "phone", "value": "+1 555 555 0101", "use": "home"},
            {"system": "phone", "value": "+1 555 555 0102", "use": "mobile"},
            {"system": "email", "value": "peter@example.org"},
        ],
        "communication": [{"language": {"coding": [{"code": "es"}]}, "preferred": True}],
    }


def test_a_batch_takes_good_entries_and_answers_each_bad_one_with_its_path(
    client: TestClient, service: EmbeddedService
) -> None:
    bad = resource("Appointment-example.json") | {"id": "bad", "status": "waitlist"}
    body = _bundle("batch", _patient(), resource("Appointment-example.json"), bad)
    response = client.post("/fhir", json=body)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", "201 Created", "422"]
    issue = entries[2]["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[2].resource.status"]
    # Contact details come from the Patient in the same Bundle: the mobile first.
    patient = store_reads.patient(service.store, "example")
    assert patient is not None
    assert (patient.phone, patient.email, patient.language) == (
        "+15555550102",
        "peter@example.org",
        "es",
    )


def test_a_transaction_with_a_bad_entry_takes_nothing(
    client: TestClient, service: EmbeddedService
) -> None:
    bad = resource("Encounter-home.json") | {"status": "planned"}
    body = _bundle("transaction", resource("Appointment-example.json"), bad)
    response = client.post("/fhir", json=body)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert service.store.episodes("example") == []


def test_a_subscription_notification_bundle_is_taken(
    client: TestClient, service: EmbeddedService
) -> None:
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "event-notification",
    }
    body = _bundle("subscription-notification", status, resource("Appointment-example.json"))
    response = client.post("/fhir", json=body)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["200 OK", "201 Created"]
    assert [e.flow for e in service.store.episodes("example")] == ["cardiology-consult"]


def test_a_bundle_of_another_type_is_not_supported(client: TestClient) -> None:
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": "document"})
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.type"]
