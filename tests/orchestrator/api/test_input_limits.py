"""Hostile input over HTTP: refused with a 4xx naming the field, kept, and never blocking the good.

Every test runs on SQLite and on PostgreSQL (the `store_url` fixture): NUL is
harmless to SQLite and fatal to PostgreSQL's text.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.event import bound_id
from tests import store_reads
from tests.builders import at, make_event_data, make_patient
from tests.orchestrator.api.served import Served, line, served
from tests.samples import ROOT

_patients = itertools.count(1)


@pytest.fixture
def app(store_url: str) -> Iterator[Served]:
    with served(store_url) as opened:
        yield opened


def booking(**changes: Any) -> dict[str, Any]:
    """An appointment booking of a patient of its own, a week ahead."""
    number = next(_patients)
    data = make_event_data(
        id=f"evt-lim-{number}", patient=make_patient(f"p-lim-{number}"), start=at(days=7)
    )
    data.update(changes)
    return data


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def change(data: dict[str, Any]) -> str:
        *parents, last = path.split(".")
        holder = data
        for step in parents:
            holder = holder[step]
        holder[last] = value
        return line(data)

    return change


# What each hostile line does to a booking; the field the answer must name.
HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "NUL in the event id": (_set("id", "evt\x00"), "id"),
    "NUL in the patient id": (_set("patient.id", "p\x00"), "patient.id"),
    "NUL in the location": (_set("appointment.location", "Main\x00Campus"), "appointment.location"),
    "lone surrogate in the event id": (_set("id", "evt-\ud800"), "id"),
    "lone surrogate in an attribute": (_set("attributes.note", "\udc00"), "attributes.note"),
    "time past year 9999 in UTC": (_set("occurred_at", "9999-12-31T23:59:59-01:00"), "occurred_at"),
    "time before year 1 in UTC": (
        _set("appointment.start", "0001-01-01T00:00:00+01:00"),
        "appointment.start",
    ),
    "time as a Unix number": (_set("occurred_at", 1767225600), "occurred_at"),
    "unknown field nested 20 deep": (
        lambda d: line(d)[:-1] + ', "extra": ' + nested(20) + "}",
        "extra",
    ),
    "unknown field nested 200 deep": (
        lambda d: line(d)[:-1] + ', "extra": ' + nested(200) + "}",
        "line 2",
    ),
    "arrays nested 990 deep": (lambda d: nested(990), "line 2"),
    "a 5,000-digit integer": (lambda d: line(d)[:-1] + ', "n": 1' + "0" * 5000 + "}", "line 2"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_event_is_rejected_alone_and_kept_and_the_events_beside_it_are_processed(
    app: Served, case: str
) -> None:
    change, field = HOSTILE[case]
    first, bad, last = booking(), booking(attributes={"note": "ok"}), booking()
    bad_patient = bad["patient"]["id"]

    response = app.post_lines(line(first), change(bad), line(last))

    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert app.kept() == 1
    [kept] = store_reads.rejected(app.service.store)
    assert field in kept.reason and "\x00" not in kept.reason
    if not field.startswith("line"):
        assert any(e.startswith(field) for e in results[1]["errors"]), results[1]
    for good in (first, last):
        assert app.service.store.episodes(good["patient"]["id"]), "a good event was not processed"
    assert app.service.store.episodes(bad_patient) == []


@pytest.mark.parametrize(
    "body",
    [
        "[" + line(make_event_data()) + ", " + nested(990) + "]",
        "[" + line(make_event_data()) + ', {"n": 1' + "0" * 5000 + "}]",
    ],
    ids=["deep", "huge integer"],
)
def test_a_body_that_cannot_be_read_within_the_limits_is_refused_whole_with_400_and_kept(
    app: Served, body: str
) -> None:
    response = app.client.post("/events", content=body.encode())

    assert response.status_code == 400
    assert response.json()["error"].startswith("body: ")
    assert app.kept() == 1
    assert app.alive()


def test_a_patient_refused_for_deep_nesting_is_not_stuck_for_its_next_event(app: Served) -> None:
    bad = booking()
    deep = line(bad)[:-1] + ', "extra": ' + nested(200) + "}"
    app.post_lines(deep)

    again = app.post_lines(line(bad))

    assert again.json()["results"][0]["status"] == "accepted"
    assert app.service.store.episodes(bad["patient"]["id"])


def test_over_long_ids_are_digested_the_same_way_and_the_patient_found_by_either(
    app: Served,
) -> None:
    long_patient = "p-" + "9" * 300
    first = booking(id="evt-" + "x" * 300, patient=make_patient(long_patient))
    second = booking(id="evt-" + "x" * 299 + "y", patient=make_patient(long_patient))

    results = app.post_lines(line(first), line(second), line(first)).json()["results"]

    assert [(r["id"], r["status"]) for r in results] == [
        (bound_id(first["id"]), "accepted"),
        (bound_id(second["id"]), "accepted"),
        (bound_id(first["id"]), "duplicate"),
    ]
    assert app.client.get(f"/patients/{long_patient}/timeline").status_code == 200
    assert app.client.get(f"/patients/{bound_id(long_patient)}/timeline").status_code == 200


def test_a_timeline_asked_with_a_nul_is_not_found(app: Served) -> None:
    assert app.client.get("/patients/p%00/timeline").status_code == 404


# -- FHIR ----------------------------------------------------------------------------------


def appointment(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (ROOT / "tests/data/fhir/Appointment-example.json").read_text()
    )
    data.update(changes)
    return data


@pytest.fixture
def fhir(store_url: str) -> Iterator[Served]:
    from datetime import UTC, datetime

    with served(store_url, now=datetime(2013, 12, 1, tzinfo=UTC)) as opened:
        yield opened


OVERFLOWING = {
    "start": ({"start": "9999-12-31T23:59:59-01:00"}, "start"),
    "meta.lastUpdated": ({"meta": {"lastUpdated": "0001-01-01T00:00:00+01:00"}}, "occurred_at"),
}


@pytest.mark.parametrize("case", OVERFLOWING)
def test_a_fhir_time_that_overflows_in_utc_is_a_400_outcome_and_kept(
    fhir: Served, case: str
) -> None:
    changes, field = OVERFLOWING[case]

    response = fhir.client.post("/fhir/Appointment", json=appointment(**changes))

    assert response.status_code == 400, response.text
    [issue] = response.json()["issue"]
    assert field in issue["diagnostics"]
    assert fhir.kept() == 1


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_an_overflowing_time_in_a_bundle_fails_its_entry_or_its_transaction_and_is_kept(
    fhir: Served, kind: str
) -> None:
    good = appointment(id="good")
    bad = appointment(id="bad", start="9999-12-31T23:59:59-01:00")
    bundle = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": good}, {"resource": bad}],
    }

    response = fhir.client.post("/fhir", json=bundle)

    assert fhir.kept() == 1
    if kind == "transaction":
        assert response.status_code == 400
        assert fhir.service.store.episodes("example") == []
    else:
        assert response.status_code == 200
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert statuses == ["201 Created", "400"]
        assert fhir.service.store.episodes("example")


def test_a_fhir_body_over_the_limit_is_413_and_its_start_kept(store_url: str) -> None:
    with served(store_url, max_body_bytes=2048) as small:
        body = json.dumps(appointment(comment="c" * 4096)).encode()

        response = small.client.post("/fhir/Appointment", content=body)

        assert response.status_code == 413
        [kept] = store_reads.rejected(small.service.store)
        assert kept.source == "fhir" and body.startswith(kept.body)


def test_two_appointments_whose_identifiers_share_a_long_prefix_are_two_events(
    fhir: Served,
) -> None:
    prefix = "A" * 190
    first, second = (
        appointment(id=None, identifier=[{"value": prefix + suffix}]) for suffix in ("-1", "-2")
    )
    for resource in (first, second):
        del resource["id"]

    answers = [fhir.client.post("/fhir/Appointment", json=r) for r in (first, second)]

    assert [a.status_code for a in answers] == [200, 200]
    notes = [a.json()["issue"][0]["diagnostics"] for a in answers]
    assert all(n.startswith("accepted: ") for n in notes), notes
    assert notes[0] != notes[1]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/imports/%00/close"),
        ("post", "/imports/%ED%A0%80/close"),
        ("post", "/events?import=%00"),
        ("get", "/audit?flow=%00"),
        ("get", "/audit?status=%00"),
        ("get", "/audit?flow=" + "f" * 5000),
        ("get", "/audit?since=9999-12-31T23:59:59-01:00"),
        ("get", "/audit?since=0001-01-01T00:00:00%2B01:00"),
        ("get", "/audit?since=2026-03-01T00:00:00"),
    ],
)
def test_a_parameter_the_store_cannot_hold_or_compare_is_a_4xx(
    app: Served, method: str, path: str
) -> None:
    response = app.client.request(method, path, content=line(make_event_data()).encode())

    assert 400 <= response.status_code < 500, response.text
    assert app.alive()
