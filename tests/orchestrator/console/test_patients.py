"""The patient pages: search by id, one patient's timeline in time order with where each
event came from, the stages entered, each message's status history and body, and what
is pending next; refused to the marketing role."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from orchestrator.console.timeline import timeline
from orchestrator.journey import Episode, Journey, StageVisit
from orchestrator.ports import MessageView
from orchestrator.roles import Role
from orchestrator.store import PatientEventView
from tests.orchestrator.console.conftest import Console, bearer, copies
from tests.orchestrator.console.test_pages import links
from tests.samples import shifted

PATIENT = "p-kr-001-000"
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _page(console: Console, path: str, role: Role = Role.OPERATIONS) -> str:
    response = console.client.get(path, headers=bearer(role))
    assert response.status_code == 200, response.text
    return response.text


def test_searching_by_id_opens_the_patients_timeline(console: Console) -> None:
    found = console.client.get(
        "/console/patients",
        params={"patient_id": f" {PATIENT} "},
        headers=bearer(Role.OPERATIONS),
        follow_redirects=False,
    )

    assert found.status_code == 303
    assert found.headers["location"] == f"/console/patients/{PATIENT}"
    assert '<form method="get" action="/console/patients">' in _page(console, "/console/patients")


def test_an_unknown_patient_is_a_404_with_the_search_form(console: Console) -> None:
    response = console.client.get("/console/patients/nobody-here", headers=bearer(Role.ADMIN))

    assert response.status_code == 404
    assert "No events or journeys for patient" in response.text
    assert 'action="/console/patients"' in response.text


def test_the_timeline_lists_events_stages_and_messages_in_time_order(console: Console) -> None:
    page = _page(console, f"/console/patients/{PATIENT}")
    rows = re.findall(r'<tr class="(\w+)" data-kind="\w+" data-at="([^"]+)">', page)
    kinds = {kind for kind, _ in rows}
    times = [datetime.fromisoformat(at) for _, at in rows]

    assert {"event", "episode", "stage", "message"} <= kinds
    assert times == sorted(times)
    # Where each event came from, and each message's channel, language and history.
    assert "from scheduling, received" in page and "from ehr, received" in page
    assert "· channel sms · language en" in page
    assert re.search(r"<ol class=\"steps\"><li>[^<]+ scheduled</li><li>[^<]+ sent</li>", page)
    messages = console.service.store.messages(patient_id=PATIENT)
    assert page.count('data-kind="message"') == len(messages)


def test_what_is_pending_is_listed_by_due_time_with_its_body(console: Console) -> None:
    # A booking after the fixture's last dispatch: its messages are all still to come.
    booked = shifted(copies("knee-replacement", 1, first=70)[0], timedelta(days=75))
    response = console.client.post("/events", json=booked, headers=bearer(Role.ADMIN))
    assert response.status_code == 202, response.text
    patient = booked["patient"]["id"]

    page = _page(console, f"/console/patients/{patient}", Role.ADMIN)
    pending = re.search(r'<table id="pending-messages">.*?</table>', page, re.S)
    scheduled = sorted(
        (m.due_at, m.key)
        for m in console.service.store.messages(patient_id=patient)
        if m.status == "scheduled"
    )

    assert pending is not None and len(scheduled) > 1
    assert re.findall(r'<tr data-key="(\w+)">', pending.group(0)) == [k for _, k in scheduled]
    assert pending.group(0).count("as it would be sent now") == len(scheduled)
    assert "Riverside Health" in pending.group(0)


def test_a_sent_message_shows_the_body_that_went_out(console: Console) -> None:
    page = _page(console, f"/console/patients/{PATIENT}")
    sent = [m for m in console.service.store.messages(patient_id=PATIENT) if m.sent_at]
    bodies = console.service.store.outbox_for([m.key for m in sent])

    assert sent and bodies
    for entry in bodies.values():
        assert entry.body.split("http")[0].strip() in page.replace("&#39;", "'")


def test_the_marketing_role_is_refused_every_patient_page(console: Console) -> None:
    for path in ("/console/patients", f"/console/patients/{PATIENT}"):
        refused = console.client.get(path, headers=bearer(Role.MARKETING))

        assert refused.status_code == 403
        assert PATIENT not in refused.text


def test_the_nav_offers_patients_to_operations_and_not_to_marketing(console: Console) -> None:
    nav = re.compile(r"<nav>.*?</nav>", re.S)
    operations = nav.search(_page(console, "/console/flows", Role.OPERATIONS))
    marketing = nav.search(_page(console, "/console/flows", Role.MARKETING))

    assert operations is not None and marketing is not None
    assert '<a href="/console/patients">Patients</a>' in operations.group(0)
    assert "/console/patients" not in marketing.group(0)
    assert '<a href="/console/audit">Audit</a>' in marketing.group(0)


def _view(key: str, due: timedelta, status: str = "scheduled") -> MessageView:
    return MessageView(
        key, "f", 1, "ep-1", "s", "m", "patient", status, None, T0 + due, None, 0, None
    )


def test_the_timeline_orders_by_time_not_by_key_and_pending_by_due_time() -> None:
    episode = Episode(
        "ep-1",
        T0,
        "s2",
        T0 + timedelta(hours=5),
        history=(StageVisit("s1", T0, "e-1"), StageVisit("s2", T0 + timedelta(hours=5), "e-2")),
    )
    events = [
        PatientEventView("e-1", "appointment.booked", "ehr", T0, T0),
        PatientEventView("e-2", "appointment.completed", "ehr", T0 + timedelta(hours=5), T0),
    ]
    messages = [_view("a", timedelta(days=3)), _view("z", timedelta(hours=1), "sent")]
    messages.append(_view("b", timedelta(days=2)))

    found = timeline("p", events, [(1, Journey("p", "f", episodes=(episode,)))], messages, [])

    assert [(e.kind, e.at - T0) for e in found.entries] == [
        ("event", timedelta(0)),
        ("episode", timedelta(0)),
        ("stage", timedelta(0)),
        ("message", timedelta(hours=1)),
        ("event", timedelta(hours=5)),
        ("stage", timedelta(hours=5)),
        ("message", timedelta(days=2)),
        ("message", timedelta(days=3)),
    ]
    assert [line.view.key for line in found.pending] == ["b", "a"]


def test_the_timeline_page_loads_and_links_only_to_this_host(console: Console) -> None:
    page = _page(console, f"/console/patients/{PATIENT}")

    # Bodies quote the portal's links as text; the page itself fetches and links only here.
    for url in links(page):
        assert url.startswith("/") and not url.startswith("//"), url
