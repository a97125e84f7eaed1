"""The dispatcher: due messages through the gate, the templates and a connector.

Every test runs on each store (memory, SQLite, PostgreSQL) and a virtual
clock; the connectors are the sandbox ones unless a test puts a fake in front
of them. A test of SQL row locks runs on PostgreSQL only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from connectors.sandbox import SandboxConnector
from orchestrator.clock import VirtualClock
from orchestrator.errors import PermanentSendError, StoreError, TransientSendError
from orchestrator.event import Channel
from orchestrator.flows import FlowSet, load_flows
from orchestrator.runtime import Connector, FlowRegistry, Outgoing, Receipt
from orchestrator.store import SqlStore
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet
from tests import store_reads
from tests.builders import T0, at, make_event, make_patient
from tests.conftest import EVERY_BACKEND, ROOT
from tests.live import wait_until
from tests.orchestrator.runtime.conftest import ORG, BuildRuntime, Runtime, Store

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

FINAL = {"sent", "delivered", "failed", "suppressed", "cancelled", "expired"}
START = at(days=8)  # 2026-03-10 14:00 UTC, 09:00 in Chicago


@dataclass
class FlakyConnector:
    """Fails with a transient error `failures` times, then sends through `inner`."""

    inner: Connector
    failures: int
    calls: list[str] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.calls.append(outgoing.key)
        if self.failures > 0:
            self.failures -= 1
            raise TransientSendError("provider answered 503")
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)


@dataclass
class RefusingConnector:
    """Refuses every message for good, as a provider does an invalid number."""

    calls: list[str] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.calls.append(outgoing.key)
        raise PermanentSendError("the number cannot receive messages")

    def find(self, key: str) -> Receipt | None:
        return None


@dataclass
class UnsureConnector:
    """Cannot tell, `unsure` times, whether a key was sent; otherwise `inner` answers."""

    inner: Connector
    unsure: int
    sends: list[str] = field(default_factory=list)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.sends.append(outgoing.key)
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        if self.unsure > 0:
            self.unsure -= 1
            raise TransientSendError("provider lookup timed out")
        return self.inner.find(key)


@pytest.fixture
def sandbox_sms(store: Store, clock: VirtualClock) -> Connector:
    """The sandbox SMS connector, for a fake to send through."""
    return SandboxConnector(store, Channel.SMS, clock)


def audit_of(runtime: Runtime, key: str) -> list[tuple[str, str | None]]:
    return [(a.status, a.reason) for a in runtime.store.audit() if a.key == key]


# -- end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> tuple[FlowSet, TemplateSet]:
    templates = TemplateSet(ROOT / "templates")
    return load_flows([ROOT / "flows"], TemplateCheck(templates, ORG)), templates


def test_every_scheduled_message_of_the_shipped_flows_ends_in_a_final_status(
    build_runtime: BuildRuntime,
    store: Store,
    shipped: tuple[FlowSet, TemplateSet],
) -> None:
    flow_set, templates = shipped
    runtime = build_runtime(FlowRegistry.open(flow_set, store, T0), template_set=templates)
    es = make_patient("p-2", language="es", phone="+15555550102", email="p2@example.org")
    p3 = make_patient("p-3", phone="+15555550103", email="p3@example.org")
    p4 = make_patient("p-4", phone="+15555550104", email=None)
    sms_only = {"channel": "sms"}
    night = at(hours=14, minutes=30)  # 22:30 in Chicago: the confirmation waits for the morning
    timeline = [
        (at(), "appointment.booked", make_patient(), {}),
        (at(minutes=30), "appointment.booked", es, {}),
        (at(hours=1), "appointment.booked", p3, {}),
        (at(hours=2), "consent.opted_out", p3, {"appointment_id": None, "attributes": sms_only}),
        (at(hours=3), "intake.completed", es, {}),
        (night, "appointment.booked", p4, {}),
        (at(days=2), "appointment.cancelled", es, {}),
        (START, "appointment.checked_in", make_patient(), {}),
        (START + timedelta(hours=1), "appointment.completed", make_patient(), {}),
    ]
    for instant, kind, patient, extra in timeline:
        event = make_event(kind, occurred_at=instant, patient=patient, start=START, **extra)
        assert [r.status for r in runtime.at(instant, event)] == ["accepted"]

    runtime.run_until_idle()

    messages = store.messages()
    assert {m.status for m in messages} <= FINAL
    assert {"sent", "cancelled"} <= {m.status for m in messages}
    audited = {a.key for a in store.audit()}
    assert audited == {a.key for a in store.audit() if a.status in FINAL}
    sent = {(m.key, m.channel) for m in messages if m.status == "sent"}
    assert runtime.outbox() == dict.fromkeys(sent, 1)
    after_opt_out = [
        m.channel
        for m in store.messages(patient_id="p-3")
        if m.status == "sent" and m.sent_at > at(hours=2)
    ]
    assert after_opt_out and set(after_opt_out) == {"email"}
    assert ("scheduled", "deferred:quiet_hours") in [
        (a.status, a.reason) for a in store.audit(patient_id="p-4")
    ]


def test_test_flow_end_to_end_sends_each_key_once(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))

    runtime.run_until_idle()

    messages = runtime.store.messages()
    assert {m.message: m.status for m in messages} == {
        "confirmation": "sent",
        "intake_nudge": "sent",
        "reminder_72h": "sent",
        "reminder_24h": "sent",
    }
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in messages}
    assert {m.attempts for m in messages} == {1}


# -- cancellation --------------------------------------------------------------------


def test_cancellation_before_due_means_nothing_is_sent(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))
    runtime.run_until(at(hours=1))  # the confirmation goes
    confirmation = runtime.message("confirmation")

    runtime.process(make_event("appointment.cancelled", start=START, occurred_at=at(hours=1)))
    runtime.run_until_idle()

    for name in ("intake_nudge", "reminder_72h", "reminder_24h"):
        assert (runtime.message(name).status, runtime.message(name).reason) == (
            "cancelled",
            "appointment_cancelled",
        )
    assert runtime.message("rebooking_nudge").status == "sent"
    sent_keys = {key for key, _ in runtime.outbox()}
    assert sent_keys == {confirmation.key, runtime.message("rebooking_nudge").key}


def test_message_cancelled_after_its_claim_is_not_sent(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))
    now = runtime.clock.now()
    (claim,) = runtime.store.claim_due(
        now, runtime.dispatcher.owner, now + timedelta(minutes=2), 10
    )

    runtime.process(make_event("appointment.cancelled", start=START))
    runtime.dispatcher.dispatch([claim])

    assert runtime.message("confirmation").status == "cancelled"
    assert runtime.outbox() == {}


@pytest.mark.backends("postgresql")  # SQL only: row locks and their order
def test_an_event_cancelling_messages_mid_dispatch_waits_instead_of_deadlocking(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher defers a batch (quiet hours) one message at a time while an
    event cancels the same messages in another order. Without one lock order
    PostgreSQL finds a deadlock and aborts one of them; with it, the event waits.
    """
    store = runtime.store
    assert isinstance(store, SqlStore)
    night = at(hours=14, minutes=30)  # 22:30 in Chicago: every send is deferred
    first, second = make_patient("p-1"), make_patient("p-2", phone="+15555550102")
    runtime.clock.move_to(night)
    runtime.process(
        make_event(patient=first, appointment_id="a-1", start=START, occurred_at=night),
        make_event(
            patient=second, appointment_id="a-2", start=START, occurred_at=at(hours=14, minutes=31)
        ),
    )
    runtime.clock.move_to(at(hours=14, minutes=31))
    deferred_one, resume = threading.Event(), threading.Event()
    reschedule = store.reschedule

    def pausing_after_the_first(*args: Any, **kwargs: Any) -> bool:
        moved = reschedule(*args, **kwargs)
        if not deferred_one.is_set():
            deferred_one.set()
            resume.wait(30)
        return moved

    monkeypatch.setattr(store, "reschedule", pausing_after_the_first)
    errors: list[BaseException] = []

    def run(step: Callable[[], object]) -> threading.Thread:
        def guarded() -> None:
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        return thread

    dispatching = run(runtime.dispatcher.tick)
    assert deferred_one.wait(30), "the dispatcher deferred nothing"
    # p-2's messages first: the order opposite to the dispatcher's (due order).
    cancelling = run(
        lambda: runtime.process(
            *(
                make_event(
                    "appointment.cancelled",
                    patient=patient,
                    appointment_id=appointment,
                    start=START,
                    occurred_at=at(hours=14, minutes=32),
                )
                for patient, appointment in ((second, "a-2"), (first, "a-1"))
            )
        )
    )
    wait_until(lambda: _waiting_for_a_lock(store), timeout=30, what="the event waiting for a lock")
    resume.set()
    dispatching.join(30)
    cancelling.join(30)

    assert errors == []
    confirmations = [runtime.message("confirmation", p) for p in ("p-1", "p-2")]
    assert [(m.status, m.reason) for m in confirmations] == [
        ("cancelled", "appointment_cancelled")
    ] * 2
    assert runtime.outbox() == {}


def _waiting_for_a_lock(store: SqlStore) -> bool:
    with store.engine.connect() as c:
        waiting = c.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


# -- send-time policies ------------------------------------------------------------------


def test_message_due_in_quiet_hours_is_deferred_in_the_store_to_eight_local(
    runtime: Runtime,
) -> None:
    night = at(hours=14, minutes=30)  # 2026-03-03 04:30 UTC, 22:30 in Chicago
    runtime.clock.move_to(night)
    runtime.process(make_event(start=START, occurred_at=night))

    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    morning = at(days=1)  # 2026-03-03 14:00 UTC, 08:00 in Chicago
    assert (confirmation.status, confirmation.due_at, confirmation.reason) == (
        "scheduled",
        morning,
        "deferred:quiet_hours",
    )
    last = [a for a in runtime.store.audit() if a.key == confirmation.key][-1]
    assert (last.status, last.reason, last.due_at) == ("scheduled", "deferred:quiet_hours", morning)
    assert runtime.outbox() == {}

    runtime.run_until(morning)

    assert runtime.message("confirmation").status == "sent"
    assert runtime.message("confirmation").sent_at == morning


def test_sms_after_opt_out_goes_by_email_or_is_suppressed_for_consent(runtime: Runtime) -> None:
    runtime.process(
        make_event(start=START),
        make_event(
            "consent.opted_out",
            occurred_at=at(minutes=1),
            appointment_id=None,
            attributes={"channel": "sms"},
        ),
    )

    runtime.run_until_idle()

    # The reminders may go by email; the intake nudge is SMS only.
    for name in ("confirmation", "reminder_72h", "reminder_24h"):
        assert (runtime.message(name).status, runtime.message(name).channel) == (
            "sent",
            "email",
        )
    nudge = runtime.message("intake_nudge")
    assert (nudge.status, nudge.reason) == ("suppressed", "consent")
    assert {channel for _, channel in runtime.outbox()} == {"email"}


def test_messages_found_due_after_the_appointment_started_are_not_sent(
    runtime: Runtime,
) -> None:
    runtime.process(make_event(start=START))
    runtime.clock.move_to(START + timedelta(hours=1))  # the dispatcher was down all along

    runtime.run_until_idle()

    statuses = {m.message: m.status for m in runtime.store.messages()}
    assert statuses["confirmation"] == "expired"
    assert statuses["reminder_72h"] == statuses["reminder_24h"] == "expired"
    sent = {m.key for m in runtime.store.messages() if m.status == "sent"}
    assert {key for key, _ in runtime.outbox()} == sent


# -- connector errors ----------------------------------------------------------------------


def test_transient_error_is_retried_with_backoff_then_sent(
    build_runtime: BuildRuntime, sandbox_sms: Connector, clock: VirtualClock
) -> None:
    connector = FlakyConnector(sandbox_sms, failures=2)
    runtime = build_runtime(connectors={Channel.SMS: connector}, backoff=timedelta(seconds=30))
    runtime.process(make_event(start=START))

    runtime.dispatcher.tick()
    first = runtime.message("confirmation")
    assert (first.status, first.reason, first.attempts) == (
        "scheduled",
        "retry:TransientSendError",
        1,
    )
    # Full jitter over half to all of the backoff, doubling each attempt.
    assert T0 + timedelta(seconds=15) <= first.due_at <= T0 + timedelta(seconds=30)

    clock.move_to(first.due_at)
    runtime.dispatcher.tick()
    second = runtime.message("confirmation")
    assert second.attempts == 2
    assert (
        first.due_at + timedelta(seconds=30)
        <= second.due_at
        <= first.due_at + timedelta(seconds=60)
    )

    clock.move_to(second.due_at)
    runtime.dispatcher.tick()
    sent = runtime.message("confirmation")
    assert (sent.status, sent.channel, sent.attempts) == ("sent", "sms", 3)
    assert connector.calls == [sent.key] * 3
    assert runtime.outbox() == {(sent.key, "sms"): 1}
    assert audit_of(runtime, sent.key) == [
        ("scheduled", None),
        ("scheduled", "retry:TransientSendError"),
        ("scheduled", "retry:TransientSendError"),
        ("sent", None),
    ]


def test_transient_errors_past_max_attempts_fail_the_message(
    build_runtime: BuildRuntime, sandbox_sms: Connector
) -> None:
    connector = FlakyConnector(sandbox_sms, failures=100)
    runtime = build_runtime(connectors={Channel.SMS: connector}, max_attempts=3)
    runtime.process(make_event(start=START))

    runtime.run_until(at(hours=1))

    failed = runtime.message("confirmation")
    assert (failed.status, failed.reason, failed.attempts) == (
        "failed",
        "retries_exhausted:TransientSendError",
        3,
    )
    assert connector.calls == [failed.key] * 3
    assert runtime.outbox() == {}
    assert audit_of(runtime, failed.key)[-1] == (
        "failed",
        "retries_exhausted:TransientSendError",
    )


def test_permanent_error_on_sms_falls_back_to_email(build_runtime: BuildRuntime) -> None:
    refusing = RefusingConnector()
    runtime = build_runtime(connectors={Channel.SMS: refusing})
    runtime.process(make_event(start=START))

    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.channel) == ("sent", "email")
    assert refusing.calls == [confirmation.key]
    assert runtime.outbox() == {(confirmation.key, "email"): 1}


def test_permanent_error_on_every_channel_fails_the_message(build_runtime: BuildRuntime) -> None:
    runtime = build_runtime(
        connectors={Channel.SMS: RefusingConnector(), Channel.EMAIL: RefusingConnector()}
    )
    runtime.process(make_event(start=START))

    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == (
        "failed",
        "permanent:PermanentSendError",
    )
    assert runtime.outbox() == {}


# -- crashes --------------------------------------------------------------------------------


def _crash_mid_send(runtime: Runtime, *, connector_called: bool) -> str:
    """Another dispatcher claims the confirmation, begins its send and dies."""
    now = runtime.clock.now()
    (claim,) = runtime.store.claim_due(now, "crashed", now + runtime.dispatcher.lease, 10)
    key = claim.message.key
    assert store_reads.begin_send(runtime.store, key, "crashed", Channel.SMS, now) == 1
    if connector_called:
        runtime.dispatcher.connectors[Channel.SMS].send(
            Outgoing(key, Channel.SMS, "+15555550101", "confirmation")
        )
    return key


def test_crash_after_the_connector_sent_is_reconciled_not_sent_again(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))
    key = _crash_mid_send(runtime, connector_called=True)
    runtime.dispatcher.tick()  # the lease is live: nobody touches it
    assert runtime.message("confirmation").status == "sending"

    runtime.clock.advance(runtime.dispatcher.lease + timedelta(seconds=1))
    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason, confirmation.channel) == (
        "sent",
        "reconciled",
        "sms",
    )
    assert runtime.outbox() == {(key, "sms"): 1}
    assert audit_of(runtime, key)[-1] == ("sent", "reconciled")


def test_crash_before_the_connector_was_called_ends_with_exactly_one_send(
    runtime: Runtime,
) -> None:
    runtime.process(make_event(start=START))
    key = _crash_mid_send(runtime, connector_called=False)

    runtime.clock.advance(runtime.dispatcher.lease + timedelta(seconds=1))
    runtime.dispatcher.tick()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("sent", None)
    assert runtime.outbox() == {(key, "sms"): 1}


def test_crash_after_the_claim_is_dispatched_once_the_lease_runs_out(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))
    now = runtime.clock.now()
    (claim,) = runtime.store.claim_due(now, "crashed", now + runtime.dispatcher.lease, 10)

    runtime.run_until_idle()

    assert runtime.message("confirmation").status == "sent"
    assert runtime.outbox()[(claim.message.key, "sms")] == 1


def test_crash_whose_outcome_the_provider_cannot_tell_yet_is_asked_again_not_resent(
    build_runtime: BuildRuntime, sandbox_sms: Connector
) -> None:
    unsure = UnsureConnector(sandbox_sms, unsure=1)
    runtime = build_runtime(connectors={Channel.SMS: unsure})
    runtime.process(make_event(start=START))
    key = _crash_mid_send(runtime, connector_called=True)

    runtime.clock.advance(runtime.dispatcher.lease + timedelta(seconds=1))
    runtime.dispatcher.tick()  # the provider cannot tell: ask again later
    assert runtime.message("confirmation").reason == "reconcile:unknown"
    runtime.run_until_idle()

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("sent", "reconciled")
    assert unsure.sends.count(key) == 1  # only the send of the process that crashed
    assert runtime.outbox()[(key, "sms")] == 1


def test_a_send_nobody_can_tell_about_is_failed_as_unresolved_once_it_is_stale(
    build_runtime: BuildRuntime, sandbox_sms: Connector
) -> None:
    # The request never reached the provider, and the provider cannot be asked.
    unsure = UnsureConnector(sandbox_sms, unsure=1_000)
    runtime = build_runtime(connectors={Channel.SMS: unsure})
    runtime.process(make_event(start=START))
    key = _crash_mid_send(runtime, connector_called=False)
    runtime.clock.advance(runtime.dispatcher.lease + timedelta(seconds=1))
    runtime.dispatcher.tick()
    assert runtime.message("confirmation").reason == "reconcile:unknown"  # asked again later

    asked = 1
    while runtime.message("confirmation").status == "sending" and asked < 500:
        runtime.clock.advance(timedelta(hours=1))
        runtime.dispatcher.tick()
        asked += 1

    confirmation = runtime.message("confirmation")
    assert (confirmation.status, confirmation.reason) == ("failed", "reconcile:unresolved")
    assert asked > 1
    assert key not in unsure.sends  # never resent
    assert (key, "sms") not in runtime.outbox()


@dataclass
class BrokenConnector:
    """Fails with an error no connector should raise: a bug, not a provider answer."""

    def send(self, outgoing: Outgoing) -> Receipt:
        raise RuntimeError("connector bug")

    def find(self, key: str) -> Receipt | None:
        return None


def test_a_message_that_breaks_the_dispatcher_fails_alone_and_the_batch_goes_on(
    build_runtime: BuildRuntime,
) -> None:
    runtime = build_runtime(connectors={Channel.SMS: BrokenConnector()})
    runtime.process(
        make_event(start=START), make_event(start=START, patient=make_patient("p-2", phone=None))
    )

    runtime.dispatcher.tick()

    broken = runtime.message("confirmation", "p-1")
    assert (broken.status, broken.reason) == ("failed", "dispatch_error:RuntimeError")
    by_email = runtime.message("confirmation", "p-2")
    assert (by_email.status, by_email.channel) == ("sent", "email")


def test_a_store_failure_after_the_sends_leaves_them_sending_and_none_is_sent_twice(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.process(*(make_event(start=START, patient=make_patient(f"p-{n}")) for n in range(3)))
    finish_sent = runtime.store.finish_sent

    def failing(*args: object, **kwargs: object) -> set[str]:
        raise StoreError("store write failed: OperationalError")

    # The connector takes the batch, then recording its outcomes fails.
    monkeypatch.setattr(runtime.store, "finish_sent", failing)
    with pytest.raises(StoreError):
        runtime.dispatcher.tick()
    monkeypatch.setattr(runtime.store, "finish_sent", finish_sent)

    sending = [m for m in runtime.store.messages() if m.message == "confirmation"]
    assert [m.status for m in sending] == ["sending"] * 3
    runtime.clock.advance(runtime.dispatcher.lease + timedelta(seconds=1))
    runtime.dispatcher.tick()

    confirmations = [m for m in runtime.store.messages() if m.message == "confirmation"]
    assert {(m.status, m.reason) for m in confirmations} == {("sent", "reconciled")}
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in confirmations}


@dataclass
class OverlappingConnector:
    """Sends only when `parties` sends are in flight at once (else the barrier breaks)."""

    inner: Connector
    parties: int
    barrier: threading.Barrier = field(init=False)
    threads: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.barrier = threading.Barrier(self.parties, timeout=10)

    def send(self, outgoing: Outgoing) -> Receipt:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)


def test_with_concurrency_a_batch_is_sent_in_parallel_each_key_once(
    build_runtime: BuildRuntime, sandbox_sms: Connector
) -> None:
    overlapping = OverlappingConnector(sandbox_sms, parties=4)
    runtime = build_runtime(connectors={Channel.SMS: overlapping}, concurrency=4)
    runtime.process(*(make_event(start=START, patient=make_patient(f"p-{n}")) for n in range(8)))

    assert runtime.dispatcher.tick() == 8

    confirmations = [m for m in runtime.store.messages() if m.message == "confirmation"]
    assert {m.status for m in confirmations} == {"sent"}
    assert runtime.outbox() == {(m.key, "sms"): 1 for m in confirmations}
    assert len(overlapping.threads) == 4
