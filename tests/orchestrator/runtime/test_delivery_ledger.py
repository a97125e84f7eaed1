"""The delivery ledger (orchestrator/store/delivery.py) on every store (memory, SQLite, PostgreSQL): forward-only states, settling unknown sends, lookups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.event import Channel
from orchestrator.message_status import MessageStatus
from tests import store_reads
from tests.builders import at, make_event, make_patient
from tests.conftest import EVERY_BACKEND
from tests.orchestrator.runtime.conftest import Runtime, delivery_reports

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

START = at(days=8)


def sent_confirmation(runtime: Runtime) -> str:
    runtime.process(make_event(start=START))
    runtime.run_until(at(hours=1))
    confirmation = runtime.message("confirmation")
    assert confirmation.status == "sent"
    return str(confirmation.key)


def test_delivery_states_only_move_forward(runtime: Runtime) -> None:
    key = sent_confirmation(runtime)
    ledger = delivery_reports(runtime.store)
    now = runtime.clock.now()

    assert ledger.advance("delivered", None, now, key=key)
    assert not ledger.advance("failed", "provider:failed", now, key=key)
    assert not ledger.advance("delivered", None, now, key=key)
    assert not ledger.settle_sent(key, "SM1", now, "reconciled:callback")

    assert ledger.status(key) == "delivered"
    statuses = [a.status for a in runtime.store.audit() if a.key == key]
    assert statuses.count("delivered") == 1 and "failed" not in statuses


def test_a_message_is_found_by_its_provider_id(runtime: Runtime) -> None:
    key = sent_confirmation(runtime)
    provider_id = f"sandbox-{runtime.store.outbox_find(key, 'sms')}"
    ledger = delivery_reports(runtime.store)

    assert ledger.advance(
        "failed", "provider:undelivered", runtime.clock.now(), provider_id=provider_id
    )

    assert ledger.status(key) == "failed"


def test_settle_sent_moves_only_a_send_of_unknown_outcome(runtime: Runtime) -> None:
    runtime.process(make_event(start=START))
    (claim,) = [
        c
        for c in runtime.store.claim_due(at(hours=1), "w", at(hours=1) + timedelta(minutes=2), 10)
        if c.message.message_id == "confirmation"
    ]
    assert (
        store_reads.begin_send(runtime.store, claim.message.key, "w", Channel.SMS, at(hours=1)) == 1
    )
    ledger = delivery_reports(runtime.store)

    assert ledger.settle_sent(claim.message.key, "SM9", at(hours=1), "reconciled:callback")
    assert not ledger.settle_sent(claim.message.key, "SM9", at(hours=1), "reconciled:callback")

    assert ledger.status(claim.message.key) == "sent"
    audit = [(a.status, a.reason) for a in runtime.store.audit() if a.key == claim.message.key]
    assert audit[-1] == ("sent", "reconciled:callback")


def test_recipients_are_found_by_phone_as_patient_or_caregiver(runtime: Runtime) -> None:
    caregiver = {"id": "c-1", "relationship": "son", "phone": "+15555550109", "receives": []}
    runtime.process(
        make_event(start=START, patient=make_patient(caregivers=[caregiver])),
        make_event(start=START, patient=make_patient("p-2", phone="+15555550109")),
    )
    ledger = delivery_reports(runtime.store)

    found = {(r.patient.id, r.recipient) for r in ledger.recipients_by_phone("+15555550109")}

    assert found == {("p-1", "caregiver:c-1"), ("p-2", "patient")}
    assert ledger.recipients_by_phone("+15555550199") == []


def test_webhook_event_ids_are_applied_once(runtime: Runtime) -> None:
    ledger = delivery_reports(runtime.store)
    now = runtime.clock.now()

    assert ledger.first_receipt("sendgrid", ["a", "b", "a"], now) == {"a", "b"}
    assert ledger.first_receipt("sendgrid", ["b", "c"], now) == {"c"}
    assert ledger.first_receipt("other", ["a"], now) == {"a"}


@pytest.mark.parametrize("status", [MessageStatus.SCHEDULED, MessageStatus.CANCELLED])
def test_provider_feedback_cannot_move_a_sent_message_anywhere_but_delivered_or_failed(
    runtime: Runtime, status: MessageStatus
) -> None:
    key = sent_confirmation(runtime)
    ledger = delivery_reports(runtime.store)

    with pytest.raises(ValueError, match="provider feedback cannot move"):
        ledger.advance(status, None, runtime.clock.now(), key=key)

    assert ledger.status(key) == MessageStatus.SENT
