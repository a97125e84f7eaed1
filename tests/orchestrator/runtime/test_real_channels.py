"""The dispatcher over the Twilio and SendGrid connectors, against the stand-ins, on both stores.

Also the dispatcher's bounded concurrency: a batch sent on threads keeps
every guarantee (each key once, one final status each).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from connectors.sendgrid import SendGridConfig, SendGridConnector
from connectors.twilio import TwilioConnector
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.runtime.feedback import Feedback
from orchestrator.store.delivery import DeliveryLedger
from tests import store_reads
from tests.builders import at, make_event, make_patient
from tests.connectors.conftest import twilio_config
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime
from tests.standins import StandIn, sendgrid_standin, twilio_standin

START = at(days=8)
PHONE = "+15555550101"


@pytest.fixture
def twilio() -> Iterator[StandIn]:
    with twilio_standin() as standin:
        yield standin


@pytest.fixture
def sms_runtime(
    build_runtime: BuildRuntime, twilio: StandIn, clock: VirtualClock
) -> Iterator[Runtime]:
    """The test flow with SMS through Twilio (the stand-in) and email in the sandbox."""
    holder: list[Runtime] = []

    def opted_out(key: str) -> int:
        runtime = holder[0]
        feedback = Feedback(
            runtime.intake, DeliveryLedger(runtime.store.transactions), runtime.clock
        )
        return feedback.consent_for_message(
            key, Channel.SMS, granted=False, source="twilio", ref=f"21610-{key}"
        )

    connector = TwilioConnector(twilio_config(twilio), clock=clock, on_opt_out=opted_out)
    holder.append(build_runtime(connectors={Channel.SMS: connector}))
    yield holder[0]
    connector.close()


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
