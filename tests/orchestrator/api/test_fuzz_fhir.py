"""Fuzzing the FHIR routes: hostile Appointments alone and beside good ones in batch Bundles.

On SQLite and PostgreSQL, whatever arrives: no 5xx, the service stays up,
every refusal is one more row in the rejected-input table, and every good
Appointment is processed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orchestrator.api.served import Served, served
from tests.samples import ROOT

_numbers = itertools.count(1)
EXAMPLE = json.loads((ROOT / "tests/data/fhir/Appointment-example.json").read_text())


@dataclass(frozen=True)
class Resource:
    text: str
    expect: str  # "good", "bad" (refused alone), "unreadable" (not JSON within the limits)
    patient: str | None = None


def _appointment(long_identifier: bool = False) -> dict[str, Any]:
    number = next(_numbers)
    data: dict[str, Any] = json.loads(json.dumps(EXAMPLE))
    del data["id"]
    value = f"fz-{number}" + ("-" + "7" * 250 if long_identifier else "")
    data["identifier"] = [{"value": value}]
    data["participant"][0]["actor"]["reference"] = f"Patient/pfz{number}"
    return data


def _good(long_identifier: bool) -> Resource:
    data = _appointment(long_identifier)
    patient = data["participant"][0]["actor"]["reference"].removeprefix("Patient/")
    return Resource(json.dumps(data), "good", patient)


@st.composite
def hostile(draw: st.DrawFn) -> Resource:
    data = _appointment()
    kind = draw(st.sampled_from(["unsafe text", "overflow", "deep", "huge"]))
    if kind == "unsafe text":
        bad = draw(st.sampled_from(["\x00", "\ud800", "\udfff"]))
        where = draw(st.sampled_from(["identifier", "display"]))
        if where == "identifier":
            data["identifier"][0]["value"] += bad
        else:
            data["participant"][0]["actor"]["display"] = "Ana" + bad
            data["participant"][0]["actor"]["reference"] = "Location/1"
            data["participant"].append(
                {"actor": {"reference": "Patient/pfzx"}, "status": "accepted"}
            )
        return Resource(json.dumps(data), "bad")
    if kind == "overflow":
        value = draw(st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]))
        if draw(st.booleans()):
            data["start"] = value
        else:
            data["meta"] = {"lastUpdated": value}
        return Resource(json.dumps(data), "bad")
    if kind == "deep":
        depth = draw(st.sampled_from([65, 990, 5000]))
        return Resource(
            json.dumps(data)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}", "unreadable"
        )
    digits = draw(st.integers(20, 6000))
    return Resource(json.dumps(data)[:-1] + ', "priority": ' + "9" * digits + "}", "unreadable")


resources = st.one_of(st.builds(_good, st.booleans()), hostile())


@pytest.fixture
def fhir(store_url: str) -> Iterator[Served]:
    with served(store_url, now=datetime(2013, 12, 1, tzinfo=UTC)) as opened:
        yield opened


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(resource=resources)
def test_one_hostile_appointment_is_a_4xx_outcome_and_kept(
    fhir: Served, resource: Resource
) -> None:
    kept = fhir.kept()

    response = fhir.client.post("/fhir/Appointment", content=resource.text.encode())

    assert response.status_code < 500, response.text
    assert fhir.alive()
    assert response.json()["resourceType"] == "OperationOutcome"
    if resource.expect == "good":
        assert response.status_code == 200, response.text
        assert fhir.service.store.episodes(resource.patient or "")
        assert fhir.kept() == kept
    else:
        assert 400 <= response.status_code < 500
        assert fhir.kept() == kept + 1


@FUZZ
@given(entries=st.lists(resources, min_size=1, max_size=4))
def test_a_batch_takes_its_good_appointments_and_keeps_the_hostile_ones(
    fhir: Served, entries: list[Resource]
) -> None:
    kept = fhir.kept()
    text = (
        '{"resourceType": "Bundle", "type": "batch", "entry": ['
        + ", ".join('{"resource": ' + e.text + "}" for e in entries)
        + "]}"
    )

    response = fhir.client.post("/fhir", content=text.encode())

    assert response.status_code < 500, response.text
    assert fhir.alive()
    if any(e.expect == "unreadable" for e in entries):
        assert response.status_code == 400
        assert fhir.kept() == kept + 1
        return
    assert response.status_code == 200, response.text
    answers = [e["response"]["status"] for e in response.json()["entry"]]
    for entry, answer in zip(entries, answers, strict=True):
        if entry.expect == "good":
            assert answer in ("201 Created", "200 OK")
            assert fhir.service.store.episodes(entry.patient or "")
        else:
            assert answer.startswith("4"), answer
    # The body is kept once, whatever number of its entries failed.
    assert fhir.kept() == kept + any(e.expect != "good" for e in entries)
