"""Nothing late: a message is never sent past its staleness limit (guarantee 6).

The README tour ingests the cardiology sample with `--shift-to-now`: its
latest event happens now, so what the stream scheduled weeks before that
event is long overdue. These tests replay that on the embedded service with
a virtual clock standing at the stream's latest event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from orchestrator.api.app import create_app
from orchestrator.clock import VirtualClock
from orchestrator.errors import MessageStaleError, TransientSendError
from orchestrator.event import Channel
from orchestrator.runtime import Outgoing, Receipt
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.simulate import PlayOrder, simulate
from orchestrator.templates import TemplateSet
from tests.builders import at, make_event
from tests.inbound_service import build_service
from tests.live import TestClient
from tests.orchestrator.runtime.conftest import FLOW, BuildRuntime, Runtime
from tests.orchestrator.test_simulate import late_booking
from tests.samples import ROOT, sample_events, sample_ndjson


@dataclass
class UnavailableConnector:
    """Answers every send with a transient error, as a provider in an outage does."""

    calls: list[str] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.calls.append(outgoing.key)
        raise TransientSendError("provider answered 503")

    def find(self, key: str) -> Receipt | None:
        return None


CARDIOLOGY = sample_events("cardiology-consult")
LATEST = max(datetime.fromisoformat(e["occurred_at"]) for e in CARDIOLOGY)


def tour_service(store_url: str, **settings: object) -> EmbeddedService:
    return build_service(
        Settings(db=store_url, flows=ROOT / "flows", templates=ROOT / "templates", **settings),  # type: ignore[arg-type]
        VirtualClock(LATEST),
    )


@pytest.fixture
def service(store_url: str) -> Iterator[EmbeddedService]:
    built = tour_service(store_url)
    yield built
    built.store.engine.dispose()


def ingest_the_tour(service: EmbeddedService) -> None:
    """`ingest samples/events/cardiology-consult.jsonl --shift-to-now`, then dispatch what is due."""
    with TestClient(create_app(service, run_dispatcher=False)) as client:
        response = client.post(
            "/events",
            content=sample_ndjson("cardiology-consult"),
            headers={"content-type": "application/x-ndjson"},
        )
    assert response.status_code == 202
    while service.dispatcher.tick():
        pass


def decisions(service: EmbeddedService, patient_id: str, message_id: str) -> list[tuple[str, str]]:
    """The audited (status, reason) of one flow message for one patient, in order."""
    return [
        (a.status, a.reason or "")
        for a in service.store.audit(patient_id=patient_id)
        if a.message == message_id
    ]


def test_follow_ups_due_a_week_before_the_ingest_are_expired_as_stale_not_sent(
    service: EmbeddedService,
) -> None:
    ingest_the_tour(service)

    for message_id in ("next_steps", "satisfaction_survey"):
        audited = decisions(service, "p-cc-001", message_id)
        assert audited[-1] == ("expired", "stale"), message_id
        assert all(status != "sent" for status, _ in audited), message_id
    sent = {entry.key for entry in service.store.outbox(limit=1000)}
    expired = {m.key for m in service.store.messages() if m.status == "expired"}
    assert not sent & expired


def test_nothing_without_an_expiry_of_its_own_is_sent_a_day_after_it_was_due(
    service: EmbeddedService,
) -> None:
    flow = service.flows.current["cardiology-consult"]
    unlimited = {spec.id for _, spec in flow.specs.values() if spec.expiry is None}
    assert {"next_steps", "satisfaction_survey", "rebooking_nudge"} <= unlimited

    ingest_the_tour(service)

    for row in service.store.messages():
        if row.status == "sent" and row.message in unlimited:
            assert row.sent_at - row.due_at < timedelta(days=1), row.message


def test_a_longer_default_limit_lets_a_day_old_follow_up_go(store_url: str) -> None:
    # p-cc-002 completed their visit 4 days before the latest event: their
    # survey is overdue by days; with a week's limit it still goes.
    service = tour_service(store_url, stale_after=timedelta(days=7))
    try:
        ingest_the_tour(service)
        [row] = [
            m
            for m in service.store.messages(patient_id="p-cc-002")
            if m.message == "satisfaction_survey"
        ]
        assert row.status == "sent"
    finally:
        service.store.engine.dispose()


def test_the_runtime_expires_as_stale_what_simulate_expires_as_stale(
    runtime: Runtime, templates: TemplateSet
) -> None:
    events = late_booking()
    simulated = {
        (r.patient_id, r.message): (r.status, r.reason)
        for r in simulate(events, {FLOW.id: FLOW}, templates, order=PlayOrder.ARRIVAL)
        if r.status != "scheduled"
    }

    for event in events:
        runtime.clock.move_to(event.occurred_at)
        runtime.process(event)
    runtime.run_until(runtime.clock.now())

    nudge = runtime.message("intake_nudge", "p-1")
    assert (nudge.status, nudge.reason) == ("expired", "stale")
    assert simulated[("p-1", "intake_nudge")] == ("expired", "stale")
    assert simulated[("p-1", "confirmation")][0] == runtime.message("confirmation", "p-1").status


def test_a_retry_that_would_fall_past_the_limit_expires_the_message_at_once(
    build_runtime: BuildRuntime,
) -> None:
    down = UnavailableConnector()
    runtime = build_runtime(
        connectors={Channel.SMS: down, Channel.EMAIL: down},
        stale_after=timedelta(minutes=30),
        backoff=timedelta(hours=1),
    )
    runtime.clock.move_to(at(hours=2))  # 10:00 in Chicago: no quiet hours
    runtime.process(make_event("appointment.booked", occurred_at=at(hours=2), start=at(days=8)))
    runtime.clock.advance(timedelta(days=1))  # the intake nudge falls due

    runtime.dispatcher.tick()

    nudge = runtime.message("intake_nudge")
    assert (nudge.status, nudge.reason) == ("expired", "stale")
    assert down.calls.count(nudge.key) == 1


@dataclass
class RecordingConnector:
    """Takes every send, keeping what it was handed."""

    handed: list[Outgoing] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.handed.append(outgoing)
        return Receipt(f"r-{len(self.handed)}")

    def find(self, key: str) -> Receipt | None:
        return None


@dataclass
class StaleConnector:
    """Finds every message stale when handed it, as a connector does whose clock moved on."""

    calls: list[str] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.calls.append(outgoing.key)
        raise MessageStaleError("the message reached its staleness limit before it was sent")

    def find(self, key: str) -> Receipt | None:
        return None


def test_the_connector_is_handed_the_messages_staleness_limit(build_runtime: BuildRuntime) -> None:
    sms = RecordingConnector()
    runtime = build_runtime(connectors={Channel.SMS: sms}, stale_after=timedelta(hours=6))
    booked = at(hours=2)  # 10:00 in Chicago
    runtime.clock.move_to(booked)
    runtime.process(make_event("appointment.booked", occurred_at=booked, start=at(days=8)))

    runtime.run_until(at(days=1, hours=2))

    limits = {o.key: o.valid_until for o in sms.handed}
    confirmation = runtime.message("confirmation")  # expires when the visit starts
    nudge = runtime.message("intake_nudge")  # no expiry: six hours after it was due
    assert limits[confirmation.key] == at(days=8)
    assert limits[nudge.key] == nudge.due_at + timedelta(hours=6)


def test_a_message_a_connector_finds_stale_is_expired_and_not_tried_elsewhere(
    build_runtime: BuildRuntime,
) -> None:
    stale = StaleConnector()
    email = RecordingConnector()
    runtime = build_runtime(connectors={Channel.SMS: stale, Channel.EMAIL: email})
    booked = at(hours=2)
    runtime.clock.move_to(booked)
    runtime.process(make_event("appointment.booked", occurred_at=booked, start=at(days=8)))

    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("expired", "stale")
    assert stale.calls == [confirmation.key]
    assert email.handed == []
