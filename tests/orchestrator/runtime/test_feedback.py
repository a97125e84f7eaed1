"""Provider feedback as events: what it says about the patient, on every store (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from orchestrator.event import Channel
from orchestrator.runtime.feedback import Feedback
from tests import store_reads
from tests.builders import at, make_event, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.runtime.conftest import Runtime, delivery_reports

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

PHONE = "+15555550101"


def test_a_reply_restates_nothing_so_a_newer_fact_arriving_late_still_wins(
    runtime: Runtime,
) -> None:
    runtime.process(make_event(start=at(days=8), patient=make_patient(phone=PHONE)))
    runtime.clock.move_to(at(hours=2))
    feedback = Feedback(runtime.intake, delivery_reports(runtime.store), runtime.clock)
    assert feedback.replied(PHONE, "C", source="twilio", ref="SM-1") == 1

    # The EHR's change of number happened before the reply and reaches us after it.
    runtime.process(
        make_event(
            "patient.updated",
            occurred_at=at(hours=1),
            patient={"id": "p-1", "phone": "+15555550109"},
        )
    )

    patient = store_reads.patient(runtime.store, "p-1")
    assert patient is not None
    assert (patient.phone, patient.email) == ("+15555550109", "patient@example.org")


def test_an_opt_out_handed_to_the_queue_counts_as_queued_not_recorded(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.process(make_event(start=at(days=8), patient=make_patient(phone=PHONE)))
    feedback = Feedback(runtime.deferred, delivery_reports(runtime.store), runtime.clock)

    with caplog.at_level(logging.INFO, logger="orchestrator.runtime.feedback"):
        assert feedback.consent_for_phone(PHONE, granted=False, source="twilio", ref="SM-1") == 1

    assert [(r.getMessage(), r.__dict__["status"]) for r in caplog.records] == [
        ("feedback.queued", "queued")
    ]
    assert Channel.SMS not in store_reads.consent(runtime.store, "p-1", "patient")
    runtime.tick()
    assert store_reads.consent(runtime.store, "p-1", "patient")[Channel.SMS].granted is False
