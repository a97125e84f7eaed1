"""A batch is sent one message after another: what an event says meanwhile still counts.

Each message is marked "sending" just before its own send, not the whole
batch up front: a cancellation or an opt-out processed while earlier
messages of the batch are with the provider still stops a later one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.event import Channel
from orchestrator.ports import Connector, Outgoing, Receipt
from tests.builders import at, make_event, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.runtime.conftest import BuildRuntime, Runtime

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

# The 72-hour reminder falls due at once, with the confirmation.
START = at(days=3)


class _DuringFirstSend:
    """A connector that runs `meanwhile` while it hands over the batch's first message."""

    def __init__(self, inner: Connector, meanwhile: Callable[[Outgoing], None]) -> None:
        self.inner, self.meanwhile = inner, meanwhile

    def send(self, outgoing: Outgoing) -> Receipt:
        self.meanwhile(outgoing)
        return self.inner.send(outgoing)

    def find(self, key: str) -> Receipt | None:
        return self.inner.find(key)


def _two_patients_due(
    build: BuildRuntime, meanwhile: Callable[[Runtime, str], None]
) -> tuple[Runtime, list[str]]:
    """Two patients' confirmations and reminders due in one batch; `meanwhile(runtime,
    other)` runs while the batch's first message is being sent, `other` naming the
    patient it does not belong to."""
    plain = build()
    runtime = build(concurrency=1)
    order: list[str] = []

    def first_send(outgoing: Outgoing) -> None:
        if order:
            return
        sending = next(
            p
            for p in ("p-1", "p-2")
            if outgoing.key in {m.key for m in runtime.store.messages(patient_id=p)}
        )
        order.extend([sending, "p-2" if sending == "p-1" else "p-1"])
        meanwhile(runtime, order[1])

    runtime.dispatcher.connectors = {
        channel: _DuringFirstSend(plain.dispatcher.connectors[channel], first_send)
        for channel in Channel
    }
    for n in (1, 2):
        runtime.process(
            make_event(
                id=f"evt-book-{n}",
                start=START,
                patient=make_patient(f"p-{n}"),
                appointment_id=f"a-{n}",
            )
        )
    return runtime, order


def test_a_cancellation_processed_while_the_batch_sends_stops_a_later_message(
    build_runtime: BuildRuntime,
) -> None:
    def cancel(runtime: Runtime, patient: str) -> None:
        cancelled = make_event(
            "appointment.cancelled",
            id=f"evt-cancel-{patient}",
            start=START,
            patient=make_patient(patient),
            appointment_id=patient.replace("p-", "a-"),
        )
        assert [r.status for r in runtime.process(cancelled)] == ["accepted"]

    runtime, order = _two_patients_due(build_runtime, cancel)

    runtime.dispatcher.tick()

    first, other = order

    reminder = runtime.message("reminder_72h", other)
    assert reminder.status == "cancelled"
    assert reminder.key not in {key for key, _ in runtime.outbox()}
    assert runtime.message("reminder_72h", first).status == "sent"


def test_an_opt_out_processed_while_the_batch_sends_stops_a_later_message(
    build_runtime: BuildRuntime,
) -> None:
    def opt_out(runtime: Runtime, patient: str) -> None:
        stop = make_event(
            "consent.opted_out", id=f"evt-stop-{patient}", patient=make_patient(patient)
        )
        assert [r.status for r in runtime.process(stop)] == ["accepted"]

    runtime, order = _two_patients_due(build_runtime, opt_out)

    runtime.dispatcher.tick()

    first, other = order

    sent = {key for key, _ in runtime.outbox()}
    assert {m.key for m in runtime.store.messages(patient_id=other)}.isdisjoint(sent)
    assert runtime.message("confirmation", first).key in sent
