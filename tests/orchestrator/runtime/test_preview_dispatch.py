"""The preview is what the dispatcher sends, and a test send is never counted.

Rendered through the dispatcher with the sandbox connectors, on the stores
(`backends` in tests/conftest.py), the shipped flows and templates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import orchestrator.preview as preview
from orchestrator.event import Channel, Event
from orchestrator.flows.loader import load_flows
from orchestrator.insight.reading import measured
from orchestrator.store import SqlStore, TestSendLedger
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet
from tests.builders import T0, make_event, make_patient

from .conftest import ORG, BuildRuntime

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = TemplateSet(ROOT / "templates")
FLOW = load_flows([ROOT / "flows"], TemplateCheck(TEMPLATES, ORG)).flows["cardiology-consult"]
# Tuesday 2026-03-10, 10:30 in Chicago: the booking on T0 gets its confirmation,
# guide and reminders sent before it.
START = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def booked(language: str = "es") -> Event:
    return make_event(
        "appointment.booked",
        patient=make_patient("p-1", language=language, timezone=FLOW.timezone),
        start=START,
        service="cardiology.consult",
    )


@pytest.mark.parametrize("language", ["es", "en"])
def test_the_preview_renders_exactly_what_the_dispatcher_sends(
    build_runtime: BuildRuntime, language: str
) -> None:
    runtime = build_runtime({FLOW.id: FLOW}, template_set=TEMPLATES)
    runtime.process(booked(language=language))
    runtime.run_until(START)
    sent = runtime.store.outbox(limit=100)
    assert len({e.key for e in sent}) >= 3  # confirmation, guide, reminders at least
    local = START.astimezone(ZoneInfo(FLOW.timezone))
    ids = {m.key: m.message for m in runtime.store.messages()}

    for entry in sent:
        sample = preview.Sample(
            key=entry.key,
            appointment_on=local.date(),
            appointment_time=local.time(),
            location="Main Campus",
            service="cardiology.consult",
            provider="",
        )
        [shown] = preview.render_all(
            FLOW,
            TEMPLATES,
            ORG,
            message=ids[entry.key],
            language=language,
            channel=Channel(entry.channel),
            sample=sample,
        ).messages

        assert (shown.body, shown.subject, shown.html) == (entry.body, entry.subject, entry.html)


def test_a_test_send_is_recorded_but_never_in_figures_audit_or_caps(
    build_runtime: BuildRuntime,
) -> None:
    runtime = build_runtime({FLOW.id: FLOW}, template_set=TEMPLATES)
    runtime.process(booked())
    runtime.run_until(T0.replace(hour=20))
    store = runtime.store
    assert isinstance(store, SqlStore)
    assert _sends_of(store, "p-1"), "the patient has sends a cap counts"
    before = (
        measured(store, FLOW),
        store.audit(flow=FLOW.id),
        store.messages(),
        _sends_of(store, "p-1"),
    )
    found = preview.render_all(FLOW, TEMPLATES, ORG, message="booking_confirmation")
    # To the patient's own number: the cap of that recipient must not move either.
    recipient = preview.TestRecipient(phone="+15555550101", email="patient@example.org")

    records = [
        preview.test_send(
            shown,
            recipient=recipient,
            connectors=runtime.dispatcher.connectors,
            record=TestSendLedger(store.transactions),
            clock=runtime.clock,
            requested_by="ops@example.org",
        )
        for shown in found.messages
    ]

    after = (
        measured(store, FLOW),
        store.audit(flow=FLOW.id),
        store.messages(),
        _sends_of(store, "p-1"),
    )
    assert after == before
    kept = TestSendLedger(store.transactions).test_sends()
    assert [r.id for r in kept] == [r.id for r in reversed(records)]
    assert {(r.message_id, r.language, r.channel) for r in kept} == {
        ("booking_confirmation", language, channel)
        for language in ("en", "es")
        for channel in (Channel.SMS, Channel.EMAIL)
    }
    assert all(r.key.startswith("test-") and r.requested_by == "ops@example.org" for r in kept)
    outbox = {e.key: e for e in store.outbox(limit=100)}
    assert {r.key for r in kept} <= set(outbox)
    assert {outbox[r.key].body for r in kept} == {m.body for m in found.messages}


def _sends_of(store: SqlStore, patient_id: str) -> object:
    """What a frequency cap counts for the patient: their sends since the start of the test."""
    journey = next(j for _, j in store.flow_journeys(FLOW.id) if j.patient_id == patient_id)
    return store.sending_facts(list(journey.messages.values()), T0).sent
