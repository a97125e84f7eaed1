"""Pacing: the dispatcher sends at each sender's rate, through buckets every process shares.

Every test runs on each store (memory, SQLite, PostgreSQL) and a virtual
clock: ten patients booked at one instant make ten confirmations due at
once, sent by SMS through a sender paced at 2 segments a second, burst 2.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.memory_store import MemoryStore
from orchestrator.policies.pacing import Pace
from orchestrator.runtime import Connector, Outgoing, Receipt
from orchestrator.runtime.pacing import SANDBOX, Pacer, PacingPlan, Sender, plan_for
from orchestrator.settings import Settings
from orchestrator.store import SqlStore, connect
from tests.builders import T0, make_event, make_patient
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime, Store

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

SENDER = "+15555550100"
PLAN = PacingPlan({Channel.SMS: Sender(SENDER, Pace(rate=2, burst=2))})
EXPECTED = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


@dataclass
class Recording:
    """Sends through `inner`, noting the virtual instant of each send."""

    inner: Connector
    clock: VirtualClock
    sent: list[tuple[str, datetime]] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.sent.append((outgoing.key, self.clock.now()))
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)

    def seconds(self) -> list[float]:
        return sorted((at - T0).total_seconds() for _, at in self.sent)


def book(runtime: Runtime, patients: int = 10, start: datetime | None = None) -> None:
    """`patients` bookings at T0: each makes an SMS confirmation due at T0."""
    start = start or T0 + timedelta(days=10)
    results = runtime.process(
        *(
            make_event(
                id=f"evt-book-{i}",
                patient=make_patient(f"p-{i}", phone=f"+1555555{i:04d}", email=None),
                appointment_id=f"a-{i}",
                start=start,
            )
            for i in range(patients)
        )
    )
    assert {r.status for r in results} == {"accepted"}


def paced(
    build_runtime: BuildRuntime, store: Store, **options: object
) -> tuple[Runtime, Recording]:
    runtime = build_runtime(**options)
    sms = Recording(runtime.dispatcher.connectors[Channel.SMS], runtime.clock)
    runtime.dispatcher.connectors = {**runtime.dispatcher.connectors, Channel.SMS: sms}
    runtime.dispatcher.pacer = Pacer(store, PLAN)
    return runtime, sms


def confirmations(runtime: Runtime) -> list[list[tuple[str, str | None]]]:
    """Each confirmation's audited (status, reason), in order."""
    rows = runtime.store.audit()
    keys = sorted({r.key for r in rows if r.message == "confirmation"})
    return [[(r.status, r.reason) for r in rows if r.key == key] for key in keys]


def test_ten_messages_due_at_once_go_at_the_senders_rate_after_its_burst(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime, sms = paced(build_runtime, store)
    book(runtime)
    runtime.run_until(T0 + timedelta(minutes=1))
    assert sms.seconds() == EXPECTED


def test_without_a_pacer_they_all_go_at_once(build_runtime: BuildRuntime, store: Store) -> None:
    runtime, sms = paced(build_runtime, store)
    runtime.dispatcher.pacer = None
    book(runtime)
    runtime.run_until(T0 + timedelta(minutes=1))
    assert sms.seconds() == [0.0] * 10


def test_a_held_message_is_audited_once_as_paced_with_the_instant_it_waits_for(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime, sms = paced(build_runtime, store)
    book(runtime)
    runtime.run_until(T0 + timedelta(minutes=1))
    histories = confirmations(runtime)
    assert sorted(histories) == sorted(
        [[("scheduled", None), ("sent", None)]] * 2
        + [[("scheduled", None), ("scheduled", "paced"), ("sent", None)]] * 8
    )
    held = [r for r in runtime.store.audit() if r.reason == "paced"]
    sent_at = dict(sms.sent)
    # The row says until when: the instant it then went.
    assert sorted(r.due_at for r in held) == sorted(sent_at[r.key] for r in held)
    assert all(r.at == T0 for r in held)


def test_a_message_its_sender_could_take_only_past_its_limit_expires_stale(
    build_runtime: BuildRuntime, store: Store
) -> None:
    # The confirmation expires at the appointment's start: 3 s after the bookings.
    runtime, sms = paced(build_runtime, store)
    book(runtime, start=T0 + timedelta(seconds=3))
    runtime.run_until(T0 + timedelta(minutes=1))
    assert sms.seconds() == EXPECTED[:7]
    statuses = [history[-1] for history in confirmations(runtime)]
    assert statuses.count(("expired", "stale")) == 3
    # Expired when the dispatcher saw it could not go in time: never held first.
    assert (
        sum(("scheduled", "paced") in h and h[-1][0] == "expired" for h in confirmations(runtime))
        == 0
    )


def test_a_message_held_past_its_limit_expires_stale_and_is_not_sent_late(
    build_runtime: BuildRuntime, store: Store
) -> None:
    runtime, sms = paced(build_runtime, store)
    book(runtime, start=T0 + timedelta(seconds=3))
    runtime.tick()  # two go, five are held, three could only go too late
    assert sms.seconds() == [0.0, 0.0]
    runtime.clock.move_to(T0 + timedelta(seconds=5))  # the dispatcher was away meanwhile
    runtime.run_until(T0 + timedelta(minutes=1))
    assert sms.seconds() == [0.0, 0.0]
    held = [h for h in confirmations(runtime) if ("scheduled", "paced") in h]
    assert len(held) == 5
    assert {h[-1] for h in held} == {("expired", "stale")}


def other_session(store: Store, store_url: str) -> Iterator[Store]:
    """The same store as another process sees it: its own engine (the memory store is one)."""
    if isinstance(store, MemoryStore):
        yield store
        return
    engine = connect(store_url)
    try:
        yield SqlStore(engine)
    finally:
        engine.dispose()


@pytest.fixture
def second_store(store: Store, store_url: str) -> Iterator[Store]:
    yield from other_session(store, store_url)


def test_two_dispatchers_on_one_store_together_keep_the_rate(
    build_runtime: BuildRuntime, store: Store, second_store: Store, store_url: str
) -> None:
    first, first_sms = paced(build_runtime, store, batch=3, owner="first")
    book(first)
    second, second_sms = paced(build_runtime, store, batch=3, owner="second")  # same clock
    second.dispatcher.store = second_store
    second.dispatcher.pacer = Pacer(second_store, PLAN)
    dispatchers = [first.dispatcher, second.dispatcher]
    for turn in range(40):
        # Each claims first in turn: both dispatch, neither only holds.
        handled = sum(d.tick() for d in (dispatchers if turn % 2 == 0 else dispatchers[::-1]))
        due = [
            m.due_at
            for m in store.messages()
            if m.status == "scheduled" and m.due_at <= T0 + timedelta(minutes=1)
        ]
        if not handled and not due:
            break
        if not handled:
            first.clock.move_to(min(due))
    assert store_url == MEMORY or second_store is not store
    assert first_sms.sent and second_sms.sent
    # Together at the sender's rate, and each message once.
    assert sorted(first_sms.seconds() + second_sms.seconds()) == EXPECTED
    message_keys = [key for key, _ in first_sms.sent + second_sms.sent]
    assert len(set(message_keys)) == len(message_keys) == 10


TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "t" * 32}


def test_the_settings_name_each_channels_sender_and_its_pace() -> None:
    assert plan_for(Settings()).senders == {}  # the sandbox goes as fast as it may
    assert plan_for(Settings(sms_rate=5)).senders == {Channel.SMS: Sender(SANDBOX, Pace(5, 5))}
    long_code = plan_for(Settings(**TWILIO, twilio_from_number="+15555550100"))  # type: ignore[arg-type]
    assert long_code.senders[Channel.SMS] == Sender("+15555550100", Pace(1, 1))
    toll_free = plan_for(Settings(**TWILIO, twilio_from_number="+18005550100"))  # type: ignore[arg-type]
    assert toll_free.senders[Channel.SMS].pace == Pace(3, 3)
    short_code = plan_for(Settings(**TWILIO, twilio_from_number="55501"))  # type: ignore[arg-type]
    assert short_code.senders[Channel.SMS].pace == Pace(100, 100)
    pool = plan_for(
        Settings(  # type: ignore[arg-type]
            **TWILIO,
            twilio_messaging_service_sid="MG1",
            sender_rates={"MG1": {"rate": 30, "burst": 60}},
            sendgrid_api_key="SG.k",
            sendgrid_sender="care@example.org",
            email_rate=20,
        )
    )
    assert pool.senders == {
        Channel.SMS: Sender("MG1", Pace(30, 60)),
        Channel.EMAIL: Sender("care@example.org", Pace(20, 20)),
    }


def test_a_messaging_service_is_paced_only_when_a_rate_is_set_for_it() -> None:
    # Its pool's throughput is the numbers in it: one long code's pace would throttle it.
    service = {**TWILIO, "twilio_messaging_service_sid": "MG" + "0" * 32}
    plan = plan_for(Settings(**service))  # type: ignore[arg-type]
    assert Channel.SMS not in plan.senders
    assert plan.unpaced[Channel.SMS] == ("MG" + "0" * 32, "a messaging service: no rate set for it")
    assert plan_for(Settings(**service, sms_rate=50)).senders[Channel.SMS].pace == Pace(50, 50)  # type: ignore[arg-type]


def test_pacing_is_turned_off_per_sender_by_a_rate_of_0_or_off_and_for_all_by_the_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    number = {**TWILIO, "twilio_from_number": "+15555550100"}
    assert Channel.SMS not in plan_for(Settings(**number, sms_rate=0)).senders  # type: ignore[arg-type]
    monkeypatch.setenv("ORCHESTRATOR_SENDER_RATES", '{"+15555550100": "off"}')
    assert Channel.SMS not in plan_for(Settings(**number)).senders  # type: ignore[arg-type]
    monkeypatch.setenv("ORCHESTRATOR_SENDER_RATES", '{"+15555550100": 0}')
    assert Channel.SMS not in plan_for(Settings(**number)).senders  # type: ignore[arg-type]
    monkeypatch.delenv("ORCHESTRATOR_SENDER_RATES")
    monkeypatch.setenv("ORCHESTRATOR_PACING", "off")
    plan = plan_for(Settings(**number, sms_rate=5, email_rate=5))  # type: ignore[arg-type]
    assert plan.senders == {}
    assert plan.unpaced[Channel.SMS] == ("+15555550100", "ORCHESTRATOR_PACING is off")


def test_the_chosen_pace_of_each_sender_is_logged_at_startup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(**TWILIO, twilio_from_number="+15555550100")  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="orchestrator.runtime.pacing"):
        plan_for(settings).log()
    said = {(r.getMessage(), r.channel, r.sender) for r in caplog.records}  # type: ignore[attr-defined]
    assert said == {("pacing.sender", "sms", "+15555550100"), ("pacing.off", "email", SANDBOX)}
    paced_sms = next(r for r in caplog.records if r.getMessage() == "pacing.sender")
    assert (paced_sms.rate, paced_sms.burst) == (1.0, 1.0)  # type: ignore[attr-defined]


def test_a_sender_rate_given_as_a_bare_number_or_from_the_environment_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SENDER_RATES", '{"sandbox": 4, "MG1": {"rate": 30}}')
    monkeypatch.setenv("ORCHESTRATOR_SMS_BURST", "8")
    plan = plan_for(Settings())
    assert plan.senders[Channel.SMS] == Sender(SANDBOX, Pace(4, 8))
    monkeypatch.setenv("ORCHESTRATOR_SENDER_RATES", '{"sandbox": -1}')
    with pytest.raises(ValueError, match="sender_rates"):
        Settings()
