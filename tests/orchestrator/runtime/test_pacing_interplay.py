"""Pacing with the rest of the dispatcher: clocks, caps, cancellations, fallbacks, imports.

Each test runs on every store and a virtual clock, with the helpers of
`test_pacing` (ten confirmations due at T0, a sender at 2 segments a
second, burst 2, unless a test paces otherwise).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.errors import PermanentSendError
from orchestrator.event import Channel
from orchestrator.flows.model import Flow
from orchestrator.flows.schema import FlowFile
from orchestrator.policies.pacing import Ask, Pace
from orchestrator.ports import ImportHold
from orchestrator.runtime import Outgoing, Receipt
from orchestrator.runtime.pacing import Pacer, PacingPlan, Sender
from tests.builders import T0, flow_data, make_event, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime, Store
from tests.orchestrator.runtime.test_pacing import (
    PLAN,
    SENDER,
    Recording,
    book,
    confirmations,
    paced,
)

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

SLOW = Pace(rate=1 / 60, burst=1)  # one a minute


def slow_runtime(
    build_runtime: BuildRuntime, store: Store, plan: PacingPlan, **options: object
) -> Runtime:
    runtime = build_runtime(**options)
    runtime.dispatcher.pacer = Pacer(store, plan)
    return runtime


def test_a_dispatcher_whose_clock_is_a_little_behind_sends_on_the_tokens_it_finds(
    build_runtime: BuildRuntime, store: Store
) -> None:
    first, sms = paced(build_runtime, store, owner="first", batch=1)
    book(first, patients=2)
    first.clock.move_to(T0 + timedelta(milliseconds=10))
    first.dispatcher.tick()
    second, _ = paced(build_runtime, store, owner="second", batch=1)
    second.dispatcher.connectors = first.dispatcher.connectors
    second.dispatcher.clock = VirtualClock(T0)  # 10 ms behind the first
    second.dispatcher.tick()
    # The bucket (burst 2) had a token for it: it went, charged once.
    assert len(sms.sent) == 2
    assert [h[-1] for h in confirmations(first)] == [("sent", None)] * 2


def test_a_process_whose_clock_is_a_day_ahead_does_not_hold_everyone_elses_sends(
    build_runtime: BuildRuntime, store: Store
) -> None:
    pace = PLAN.senders[Channel.SMS].pace
    # Another process, its clock a day ahead, emptied the bucket and queued 50 there.
    store.take_tokens(SENDER, Channel.SMS, pace, [Ask(1)] * 52, T0 + timedelta(days=1))
    runtime, sms = paced(build_runtime, store)
    book(runtime)
    runtime.run_until(T0 + timedelta(minutes=1))
    # Reset to this clock, empty: the ten go at the rate from now, not a day out.
    assert sms.seconds() == [0.5 * (i + 1) for i in range(10)]


def capped_flow() -> Flow:
    data = flow_data(frequency_caps={"sms": {"limit": 1, "per": "7d"}})
    for message in data["stages"][0]["messages"]:
        if message["id"] == "intake_nudge":
            message["at"] = "stage.entered + 1m"
            message.pop("unless", None)
    return FlowFile.model_validate(data).to_core()


@pytest.mark.parametrize("pacing", [False, True])
def test_a_message_held_for_its_tokens_does_not_use_up_the_frequency_cap(
    build_runtime: BuildRuntime, store: Store, pacing: bool
) -> None:
    # SMS capped at 1 a week; the confirmation (until the visit at +90 s) and
    # the nudge (due at +1 min) of one patient are due in one batch at +1 min.
    flow = capped_flow()
    runtime = build_runtime({flow.id: flow})
    if pacing:
        plan = PacingPlan({Channel.SMS: Sender("S", SLOW)})
        runtime.dispatcher.pacer = Pacer(store, plan)
    patient = make_patient("p-1", email=None)
    runtime.process(
        make_event(id="b1", patient=patient, appointment_id="a-1", start=T0 + timedelta(seconds=90))
    )
    runtime.clock.move_to(T0 + timedelta(minutes=1))
    if pacing:  # another message took the sender's token just now
        store.take_tokens("S", Channel.SMS, SLOW, [Ask(1)], runtime.clock.now())
    runtime.run_until(T0 + timedelta(minutes=10))
    final = {
        r.message: (r.status, r.reason)
        for r in store.audit()
        if r.message in ("confirmation", "intake_nudge")
    }
    if pacing:
        # The confirmation's turn (+2 min) is past the visit: it expires, and the
        # nudge, not blocked by a send that never went, goes at its turn.
        assert final == {"confirmation": ("expired", "stale"), "intake_nudge": ("sent", None)}
    else:
        assert final == {
            "confirmation": ("sent", None),
            "intake_nudge": ("suppressed", "frequency_cap"),
        }


def test_places_of_held_messages_that_were_cancelled_are_given_back(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime = slow_runtime(
        build_runtime, store, PacingPlan({Channel.SMS: Sender(SENDER, Pace(rate=1, burst=1))})
    )
    book(runtime)
    runtime.tick()  # one goes; nine are held, for +1 s to +9 s
    runtime.process(
        *(
            make_event(
                "appointment.cancelled",
                id=f"evt-cancel-{i}",
                patient=make_patient(f"p-{i}", phone=f"+1555555{i:04d}", email=None),
                appointment_id=f"a-{i}",
                start=T0 + timedelta(days=10),
            )
            for i in range(1, 10)
        )
    )
    runtime.clock.move_to(T0 + timedelta(seconds=2))
    # A visit in 5 s: its confirmation may go until then.
    runtime.process(
        make_event(
            id="evt-book-late",
            patient=make_patient("p-late", phone="+15555550150", email=None),
            appointment_id="a-late",
            start=T0 + timedelta(seconds=5),
        )
    )
    runtime.tick()
    late = runtime.message("confirmation", "p-late")
    assert (late.status, late.reason) == ("sent", None)


def test_an_sms_its_sender_could_take_only_too_late_goes_by_email_instead(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime = slow_runtime(build_runtime, store, PacingPlan({Channel.SMS: Sender("S", SLOW)}))
    store.take_tokens("S", Channel.SMS, SLOW, [Ask(1)], T0)  # another send just took the token
    runtime.process(
        make_event(
            id="b1",
            patient=make_patient("p-1", email="p1@example.org"),
            appointment_id="a-1",
            start=T0 + timedelta(seconds=30),
        )
    )
    runtime.tick()
    rows = [(r.status, r.reason, r.channel) for r in store.audit() if r.message == "confirmation"]
    assert rows[-1] == ("sent", None, "email")


class RefusingSms:
    """An SMS provider that refuses every number for good."""

    def send(self, outgoing: Outgoing) -> Receipt:
        raise PermanentSendError("21211: invalid 'To' number")

    def find(self, key: str) -> Receipt | None:
        return None


def test_after_a_refusal_the_next_channel_waits_for_its_senders_tokens(
    build_runtime: BuildRuntime, store: Store
) -> None:
    plan = PacingPlan({Channel.EMAIL: Sender("care@example.org", SLOW)})
    runtime = slow_runtime(build_runtime, store, plan, connectors={Channel.SMS: RefusingSms()})
    email = Recording(runtime.dispatcher.connectors[Channel.EMAIL], runtime.clock)
    runtime.dispatcher.connectors = {**runtime.dispatcher.connectors, Channel.EMAIL: email}
    store.take_tokens("care@example.org", Channel.EMAIL, SLOW, [Ask(1)], T0)  # just taken
    runtime.process(
        make_event(
            id="b1",
            patient=make_patient("p-1", email="p1@example.org"),
            appointment_id="a-1",
            start=T0 + timedelta(days=10),
        )
    )
    runtime.tick()
    assert email.sent == []  # no token: held, not sent anyway
    held = runtime.message("confirmation")
    assert (held.status, held.reason) == ("scheduled", "paced")
    runtime.run_until(T0 + timedelta(minutes=5))
    assert email.seconds() == [60.0]
    assert runtime.message("confirmation").status == "sent"


def test_a_held_message_an_import_moves_comes_back_as_a_new_send(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime, _ = paced(build_runtime, store)
    book(runtime, patients=4)
    runtime.tick()  # two go, two are held (paced) for +0.5 s and +1 s
    held = next(m for m in store.messages() if m.reason == "paced")
    patient = next(r.patient_id for r in store.audit() if r.key == held.key)
    number = int(patient.removeprefix("p-"))
    # A line of an open import moves its visit: the message is held until the import's end.
    runtime.processor.process(
        [
            make_event(
                "appointment.rescheduled",
                id="evt-move",
                patient=make_patient(patient, phone=f"+1555555{number:04d}", email=None),
                appointment_id=f"a-{number}",
                start=T0 + timedelta(days=11),
            )
        ],
        hold=ImportHold("imp-1", T0 + timedelta(seconds=10)),
    )
    moved = runtime.message("confirmation", patient)
    assert moved.due_at == T0 + timedelta(seconds=10)
    # Its place (+0.5 s or +1 s) is long gone: it does not take tokens ahead of the queue.
    assert moved.reason is None


def test_a_message_held_again_far_from_its_instant_is_audited_with_the_new_one(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime, sms = paced(build_runtime, store)
    book(runtime)
    runtime.tick()  # two go, eight are held for +0.5 s to +4 s
    runtime.clock.move_to(T0 + timedelta(minutes=5))  # the dispatchers were away
    runtime.run_until(T0 + timedelta(minutes=10))
    back = T0 + timedelta(minutes=5)
    sent_at = dict(sms.sent)
    rows = store.audit()
    again = [key for key, at in sent_at.items() if at > back]  # too few tokens at +5 min
    assert len(again) == 6
    for key in again:
        last = [r for r in rows if r.key == key and r.reason == "paced"][-1]
        # Audited again with the instant it was held for this time: the one it went at.
        assert last.due_at == sent_at[key]
        assert last.at == back
