"""The composition root: one `Runtime` built from settings, with its intake and dispatch loop.

Here: an opt-out a connector learns while it sends (Twilio 21610) is queued
for the intake, not processed on the send thread, and is still applied.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.event_schema import parse_event
from orchestrator.kafka.worker import build_handler
from orchestrator.ports import Connector, Outgoing, Receipt
from orchestrator.runtime.intake import events_of
from orchestrator.service.runtime import Runtime
from orchestrator.settings import Settings
from tests import store_reads
from tests.inbound_service import build_service
from tests.samples import ROOT, sample_events
from tests.standins import StandIn, twilio_standin

PHONE = "+15555550101"  # p-cc-001, who prefers SMS
START = datetime(2026, 3, 2, 15, 10, tzinfo=UTC)  # the referral's time


@pytest.fixture
def twilio() -> Iterator[StandIn]:
    with twilio_standin() as standin:
        yield standin


@pytest.fixture
def runtime(tmp_path: Path, twilio: StandIn) -> Iterator[Runtime]:
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'store.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="token",
        twilio_from_number="+15555550100",
        twilio_api_base=twilio.url,
    )
    built = build_service(settings, VirtualClock(START))
    sms = built.dispatcher.connectors[Channel.SMS]
    yield built
    built.stop()
    sms.close()  # type: ignore[attr-defined]
    built.store.engine.dispose()


class _Watched:
    """A connector that notes whether the processor ran while it was sending."""

    def __init__(self, inner: Connector, runtime: Runtime) -> None:
        self.inner = inner
        self.sending = False
        self.processed_while_sending = 0
        process = runtime.processor.process

        def watched(events: Sequence[Any], **kwargs: Any) -> Any:
            self.processed_while_sending += self.sending
            return process(events, **kwargs)

        runtime.processor.process = watched  # type: ignore[method-assign]

    def send(self, outgoing: Outgoing) -> Receipt:
        self.sending = True
        try:
            return self.inner.send(outgoing)
        finally:
            self.sending = False

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)


def sms_attempts(twilio: StandIn) -> int:
    return sum(1 for r in twilio.sends() if r.form.get("To") == [PHONE])


def test_an_opt_out_learned_while_sending_is_queued_then_suppresses_the_next_sms(
    runtime: Runtime, twilio: StandIn
) -> None:
    twilio.errors[PHONE] = (400, 21610)
    watched = _Watched(runtime.dispatcher.connectors[Channel.SMS], runtime)
    runtime.dispatcher.connectors = {**runtime.dispatcher.connectors, Channel.SMS: watched}
    [referral] = [e for e in sample_events("cardiology-consult") if e["id"] == "evt-cc-0001"]
    runtime.intake.take("api", events_of([parse_event(referral)]))

    while sms_attempts(twilio) == 0:
        runtime.clock.advance(timedelta(minutes=30))
        runtime.dispatcher.tick()
        assert runtime.clock.now() < START + timedelta(days=3), "no SMS was attempted"

    # The send thread only queued the opt-out: nothing is recorded yet.
    assert watched.processed_while_sending == 0
    assert len(runtime.deferred) == 1
    assert Channel.SMS not in store_reads.consent(runtime.store, "p-cc-001", "patient")

    runtime.tick()  # the runtime takes what was queued before it dispatches again

    assert len(runtime.deferred) == 0
    consent = store_reads.consent(runtime.store, "p-cc-001", "patient")[Channel.SMS]
    assert (consent.granted, consent.source) == (False, "twilio")
    attempts = sms_attempts(twilio)
    until = runtime.clock.now() + timedelta(days=30)
    while runtime.clock.now() < until:
        runtime.clock.advance(timedelta(hours=1))
        while runtime.tick():
            pass
    assert sms_attempts(twilio) == attempts
    later = [
        a
        for a in runtime.store.audit(patient_id="p-cc-001")
        if a.recipient == "patient" and a.at > consent.at
    ]
    assert later and all(a.channel != "sms" or a.status == "suppressed" for a in later)


def test_the_kafka_handler_takes_the_runtimes_one_intake(runtime: Runtime) -> None:
    assert build_handler(runtime).intake is runtime.intake
    assert runtime.intake.processor is runtime.processor
