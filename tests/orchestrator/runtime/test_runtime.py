"""The composition root: one `Runtime` built from settings, with its intake and dispatch loop.

Here: an opt-out a connector learns while it sends (Twilio 21610) is queued
for the intake, not processed on the send thread, and is still applied: kept
in the store, it outlives a crash; and a deferred input that fails never
keeps the dispatcher from its batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.errors import StoreError
from orchestrator.event import Channel
from orchestrator.event_schema import parse_event
from orchestrator.kafka.worker import build_handler
from orchestrator.ports import Connector, Outgoing, Receipt
from orchestrator.runtime.intake import DEFERRED, events_of
from orchestrator.service.runtime import DispatchLoop, Runtime
from orchestrator.settings import Settings
from orchestrator.store import InboundArchive
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
def settings(tmp_path: Path, twilio: StandIn) -> Settings:
    return Settings(
        db=f"sqlite:///{tmp_path / 'store.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="token",
        twilio_from_number="+15555550100",
        twilio_api_base=twilio.url,
    )


@contextmanager
def running(settings: Settings, now: datetime) -> Iterator[Runtime]:
    built = build_service(settings, VirtualClock(now))
    sms = built.dispatcher.connectors[Channel.SMS]  # a test may wrap it
    try:
        yield built
    finally:
        built.stop()
        sms.close()  # type: ignore[attr-defined]
        built.store.engine.dispose()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    with running(settings, START) as built:
        yield built


def queued(runtime: Runtime) -> int:
    return len(InboundArchive(runtime.store).pending(DEFERRED, 100))


def referral() -> dict[str, Any]:
    [found] = [e for e in sample_events("cardiology-consult") if e["id"] == "evt-cc-0001"]
    return found


def until_an_sms_is_attempted(runtime: Runtime, twilio: StandIn) -> None:
    """Dispatch alone (what the loop's tick does after its drain) until an SMS was tried."""
    while sms_attempts(twilio) == 0:
        runtime.clock.advance(timedelta(minutes=30))
        runtime.dispatcher.tick()
        assert runtime.clock.now() < START + timedelta(days=3), "no SMS was attempted"


def a_month_of_ticks(runtime: Runtime) -> None:
    until = runtime.clock.now() + timedelta(days=30)
    while runtime.clock.now() < until:
        runtime.clock.advance(timedelta(hours=1))
        while runtime.tick():
            pass


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
    runtime.intake.take("api", events_of([parse_event(referral())]))

    until_an_sms_is_attempted(runtime, twilio)

    # The send thread only queued the opt-out: nothing is recorded yet.
    assert watched.processed_while_sending == 0
    assert queued(runtime) == 1
    assert Channel.SMS not in store_reads.consent(runtime.store, "p-cc-001", "patient")

    runtime.tick()  # the runtime takes what was queued before it dispatches again

    assert queued(runtime) == 0
    consent = store_reads.consent(runtime.store, "p-cc-001", "patient")[Channel.SMS]
    assert (consent.granted, consent.source) == (False, "twilio")
    attempts = sms_attempts(twilio)
    a_month_of_ticks(runtime)
    assert sms_attempts(twilio) == attempts
    later = [
        a
        for a in runtime.store.audit(patient_id="p-cc-001")
        if a.recipient == "patient" and a.at > consent.at
    ]
    assert later and all(a.channel != "sms" or a.status == "suppressed" for a in later)


def test_an_opt_out_queued_before_a_crash_is_applied_by_the_next_process(
    settings: Settings, twilio: StandIn
) -> None:
    twilio.errors[PHONE] = (400, 21610)
    first = build_service(settings, VirtualClock(START))
    first.intake.take("api", events_of([parse_event(referral())]))
    until_an_sms_is_attempted(first, twilio)
    now = first.clock.now()
    # kill -9 before the loop's next drain: the process goes, nothing is drained.
    first.dispatcher.connectors[Channel.SMS].close()  # type: ignore[attr-defined]
    first.store.engine.dispose()

    with running(settings, now) as again:
        assert queued(again) == 1
        again.tick()  # the first tick takes what the previous process left
        consent = store_reads.consent(again.store, "p-cc-001", "patient")[Channel.SMS]
        assert (consent.granted, consent.source) == (False, "twilio")
        attempts = sms_attempts(twilio)
        a_month_of_ticks(again)
        assert sms_attempts(twilio) == attempts


def test_a_deferred_input_that_keeps_failing_never_stops_dispatch(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.intake.take("api", events_of([parse_event(referral())]))
    process = runtime.processor.process

    def failing(events: Sequence[Any], **kwargs: Any) -> Any:
        if any(e.source.startswith("feedback") for e in events):
            raise StoreError("this batch fails every time")
        return process(events, **kwargs)

    runtime.processor.process = failing  # type: ignore[method-assign]
    poison = parse_event({**referral(), "id": "feedback-x", "source": "feedback"})
    runtime.deferred.take("feedback:twilio", events_of([poison]))

    with caplog.at_level(logging.ERROR):
        for _ in range(48):
            runtime.clock.advance(timedelta(hours=1))
            runtime.tick()

    assert {m.status for m in runtime.store.messages()} - {"scheduled"}  # dispatched meanwhile
    failed = [r for r in caplog.records if r.getMessage() == "intake.deferred_failed"]
    assert failed and {r.__dict__["error"] for r in failed} == {"StoreError"}
    assert queued(runtime) == 1  # a store error: kept to be taken once the store answers


def test_a_version_row_that_cannot_be_taken_up_never_stops_dispatch(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.intake.take("api", events_of([parse_event(referral())]))
    # A row the registry refuses (its source says another version): loud, not fatal.
    flow_id = next(iter(runtime.flows.current))
    current = runtime.flows.current[flow_id]
    source = next(src for (f, v), (_, src) in runtime.store.flow_versions().items() if f == flow_id)
    runtime.store.record_flow_version(flow_id, current.version + 1, source, runtime.clock.now())

    with caplog.at_level(logging.ERROR):
        for _ in range(48):
            runtime.clock.advance(timedelta(hours=1))
            runtime.tick()

    assert {m.status for m in runtime.store.messages()} - {"scheduled"}  # dispatched meanwhile
    refused = [r for r in caplog.records if r.getMessage() == "flows.refresh_failed"]
    assert refused and {r.__dict__["error"] for r in refused} == {"FlowError"}
    assert runtime.flows.current[flow_id].version == current.version


def test_the_kafka_handler_takes_the_runtimes_one_intake(runtime: Runtime) -> None:
    assert build_handler(runtime).intake is runtime.intake
    assert runtime.intake.processor is runtime.processor


def test_the_loop_keeps_the_store_error_it_waited_out() -> None:
    failures = iter([StoreError("the store is unavailable")])

    def tick() -> int:
        raise next(failures)

    loop = DispatchLoop(tick, 1.0, VirtualClock(START), wait=lambda _until: True)
    loop.run()

    assert isinstance(loop.store_error, StoreError) and loop.error is None
