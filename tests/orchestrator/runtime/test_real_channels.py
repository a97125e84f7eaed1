"""The dispatcher over the Twilio and SendGrid connectors, against the stand-ins, on both stores.

Twilio is built by `real_connectors`, as `Runtime.build` builds it: its 21610
opt-outs go to the deferred intake, kept in the store by the send thread and
taken by the runtime's next tick.

Also the dispatcher's bounded concurrency: a batch sent on threads keeps
every guarantee (each key once, one final status each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from connectors.sendgrid import SendGridConfig, SendGridConnector
from connectors.twilio import TwilioConnector
from orchestrator.event import Channel
from orchestrator.runtime.channels import real_connectors
from orchestrator.runtime.intake import DEFERRED
from orchestrator.settings import Settings
from tests import store_reads
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import (
    BuildRuntime,
    Runtime,
    delivery_reports,
    inbound_archive,
)
from tests.standins import StandIn, sendgrid_standin, twilio_standin

START = at(days=8)
PHONE = "+15555550101"


@pytest.fixture
def twilio() -> Iterator[StandIn]:
    with twilio_standin() as standin:
        yield standin


BuildSms = Callable[..., Runtime]


@pytest.fixture
def build_sms(build_runtime: BuildRuntime, twilio: StandIn) -> Iterator[BuildSms]:
    """Runtimes with SMS through Twilio (the stand-in), wired as `Runtime.build` wires it."""
    built: list[TwilioConnector] = []

    def build(**dispatcher_options: Any) -> Runtime:
        runtime = build_runtime(**dispatcher_options)
        settings = Settings(
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="token",
            twilio_messaging_service_sid="MG" + "1" * 32,
            twilio_api_base=twilio.url,
            twilio_timeout_seconds=0.5,
            dispatch_concurrency=runtime.dispatcher.concurrency,
        )
        reports = delivery_reports(runtime.store)
        real = real_connectors(settings, reports, runtime.clock, runtime.deferred)
        sms = real[Channel.SMS]
        assert isinstance(sms, TwilioConnector)
        built.append(sms)
        runtime.dispatcher.connectors = {**runtime.dispatcher.connectors, Channel.SMS: sms}
        return runtime

    yield build
    for connector in built:
        connector.close()


@pytest.fixture
def sms_runtime(build_sms: BuildSms) -> Runtime:
    """The test flow with SMS through Twilio (the stand-in) and email in the sandbox."""
    return build_sms()


def queued(runtime: Runtime) -> int:
    return len(inbound_archive(runtime.store).pending(DEFERRED, 1000))


def callback_keys(twilio: StandIn) -> list[str]:
    return [r.form["StatusCallback"][0].rsplit("key=", 1)[1] for r in twilio.sends()]


def test_each_message_goes_to_twilio_once(sms_runtime: Runtime, twilio: StandIn) -> None:
    sms_runtime.process(make_event(start=START))

    sms_runtime.run_until_idle()

    messages = sms_runtime.store.messages()
    assert {m.status for m in messages} == {"sent"}
    assert sorted(callback_keys(twilio)) == sorted(m.key for m in messages)


def test_an_ambiguous_send_is_held_then_reconciled_without_a_resend(
    sms_runtime: Runtime, twilio: StandIn
) -> None:
    twilio.held.add(PHONE)
    sms_runtime.process(make_event(start=START))

    sms_runtime.dispatcher.tick()  # the confirmation: Twilio got it, the answer never came
    confirmation = sms_runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("sending", "reconcile:unknown")
    twilio.release.set()

    sms_runtime.dispatcher.tick()  # still held: not claimed again before the hold runs out
    assert len(twilio.sends()) == 1
    sms_runtime.clock.advance(sms_runtime.dispatcher.backoff + timedelta(seconds=1))
    sms_runtime.dispatcher.tick()

    confirmation = sms_runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("sent", "reconciled")
    assert callback_keys(twilio).count(confirmation.key) == 1
    assert [r.method for r in twilio.received] == ["POST", "GET"]


def test_21610_records_the_opt_out_and_later_sms_are_suppressed(
    sms_runtime: Runtime, twilio: StandIn
) -> None:
    twilio.errors[PHONE] = (400, 21610)
    sms_runtime.process(make_event(start=START))

    sms_runtime.dispatcher.tick()  # the confirmation: SMS refused, email takes it

    confirmation = sms_runtime.message("confirmation")
    assert confirmation.status == "sent" and confirmation.channel == "email"
    # The send thread kept the opt-out, committed, for the runtime's next tick to take.
    assert queued(sms_runtime) == 1
    assert Channel.SMS not in store_reads.consent(sms_runtime.store, "p-1", "patient")
    sms_runtime.tick()
    assert queued(sms_runtime) == 0
    consent = store_reads.consent(sms_runtime.store, "p-1", "patient")
    assert consent[Channel.SMS].granted is False
    assert consent[Channel.SMS].source == "twilio"
    sends = len(twilio.sends())

    sms_runtime.run_until(at(days=1, hours=1))  # the SMS-only intake nudge falls due

    nudge = sms_runtime.message("intake_nudge")
    assert (nudge.status, nudge.reason) == ("suppressed", "consent")
    assert len(twilio.sends()) == sends


def test_an_sms_only_message_refused_by_21610_is_suppressed(
    sms_runtime: Runtime, twilio: StandIn
) -> None:
    sms_runtime.process(make_event(start=START, patient=make_patient(email=None)))
    sms_runtime.run_until(at(hours=1))
    twilio.errors[PHONE] = (400, 21610)

    sms_runtime.run_until(at(days=1, hours=1))

    nudge = sms_runtime.message("intake_nudge")
    assert (nudge.status, nudge.reason) == ("suppressed", "consent:provider_opt_out")


def test_email_goes_through_sendgrid_with_the_message_key(build_runtime: BuildRuntime) -> None:
    with sendgrid_standin() as sendgrid:
        connector = SendGridConnector(
            SendGridConfig(api_key="SG.k", sender="care@example.org", api_base=sendgrid.url)
        )
        runtime = build_runtime(connectors={Channel.EMAIL: connector})
        runtime.process(make_event(start=START, patient=make_patient(phone=None)))

        runtime.run_until(at(hours=1))

        confirmation = runtime.message("confirmation")
        (request,) = sendgrid.sends()
        assert confirmation.status == "sent" and confirmation.channel == "email"
        assert request.json["custom_args"] == {"message_key": confirmation.key}


def test_a_batch_sent_on_threads_sends_each_key_once(build_runtime: BuildRuntime) -> None:
    runtime = build_runtime(concurrency=8)
    for i in range(40):
        patient = make_patient(f"p-{i}", phone=f"+1555555{i:04d}")
        runtime.process(make_event(start=START, patient=patient))

    runtime.run_until_idle()

    messages = runtime.store.messages()
    assert len(messages) == 160
    assert {m.status for m in messages} == {"sent"}
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in messages}
    sent_rows = [a for a in runtime.store.audit() if a.status == "sent"]
    assert sorted(a.key for a in sent_rows) == sorted(m.key for m in messages)


def test_opt_outs_learned_on_send_threads_are_all_kept_and_applied(
    build_sms: BuildSms, twilio: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = build_sms(concurrency=8)
    opted = {f"+1555555{i:04d}" for i in range(0, 40, 5)}
    for phone in opted:
        twilio.errors[phone] = (400, 21610)
    for i in range(40):
        patient = make_patient(f"p-{i}", phone=f"+1555555{i:04d}")
        runtime.process(make_event(start=START, patient=patient))

    with caplog.at_level(logging.ERROR):
        runtime.dispatcher.tick()  # one batch, sent on threads: each 21610 kept by its thread

    assert "twilio.opt_out_not_recorded" not in caplog.messages
    assert queued(runtime) == len(opted)
    runtime.run_until_idle()
    assert queued(runtime) == 0
    for i in range(0, 40, 5):
        consent = store_reads.consent(runtime.store, f"p-{i}", "patient")
        assert consent[Channel.SMS].granted is False
    later = [r for r in twilio.sends() if r.form.get("To", [""])[0] in opted]
    assert len(later) == len(opted)  # one refused attempt each, then never again
