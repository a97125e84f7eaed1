"""One message whose data is bad fails alone: the rest of its batch is sent, nothing stays held.

The bad data is written straight into the store, as a row written before the
input boundary was closed (or by hand) would hold it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.store import SqlStore
from orchestrator.templates import TemplateSet
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import FLOW, BuildRuntime, Runtime, write_templates

START = at(days=8)
DEEP = "[" * 5000 + "]" * 5000
IN_FLIGHT = {"claimed", "sending"}


def _two_patients(runtime: Runtime) -> None:
    """p-1 and p-2 booked; each has a confirmation due now."""
    results = runtime.process(
        make_event(start=START), make_event(start=START, patient=make_patient("p-2"))
    )
    assert {r.status for r in results} == {"accepted"}


def _execute(store: SqlStore, sql: str, **parameters: object) -> None:
    with store.engine.begin() as connection:
        assert connection.execute(text(sql), parameters).rowcount >= 1


def _confirmation(runtime: Runtime, patient_id: str) -> tuple[str, str | None]:
    message = runtime.message("confirmation", patient_id)
    return message.status, message.reason


def _assert_nothing_held_and_audited(runtime: Runtime, reason: str) -> None:
    assert not [m for m in runtime.store.messages() if m.status in IN_FLIGHT]
    failed = [a for a in runtime.store.audit(patient_id="p-1") if a.status == "failed"]
    assert [(a.message, a.reason) for a in failed] == [("confirmation", reason)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [("{}", "decode:message:ValidationError"), (DEEP, "decode:message:ValidationError")],
)
def test_a_message_whose_payload_cannot_be_read_fails_alone_and_the_batch_is_sent(
    runtime: Runtime, payload: str, reason: str
) -> None:
    _two_patients(runtime)
    key = runtime.message("confirmation", "p-1").key
    _execute(
        runtime.store, "UPDATE scheduled_messages SET payload = :p WHERE key = :k", p=payload, k=key
    )

    runtime.dispatcher.tick()

    assert _confirmation(runtime, "p-1") == ("failed", reason)
    assert _confirmation(runtime, "p-2") == ("sent", None)
    _assert_nothing_held_and_audited(runtime, reason)


@pytest.mark.parametrize("state", ["not JSON", DEEP, '{"patient_id": "p-1"}'])
def test_a_message_whose_journey_cannot_be_read_fails_alone_and_the_batch_is_sent(
    runtime: Runtime, state: str
) -> None:
    _two_patients(runtime)
    _execute(runtime.store, "UPDATE journeys SET state = :s WHERE patient_id = 'p-1'", s=state)

    runtime.dispatcher.tick()

    assert _confirmation(runtime, "p-1") == ("failed", "decode:journey:ValidationError")
    assert _confirmation(runtime, "p-2") == ("sent", None)
    _assert_nothing_held_and_audited(runtime, "decode:journey:ValidationError")


def test_a_message_whose_patient_cannot_be_read_fails_alone_and_the_batch_is_sent(
    runtime: Runtime,
) -> None:
    _two_patients(runtime)
    _execute(runtime.store, "UPDATE patients SET snapshot = :s WHERE id = 'p-1'", s=DEEP)

    runtime.dispatcher.tick()

    assert _confirmation(runtime, "p-1") == ("failed", "decode:patient:ValidationError")
    assert _confirmation(runtime, "p-2") == ("sent", None)
    _assert_nothing_held_and_audited(runtime, "decode:patient:ValidationError")


@pytest.fixture
def location_templates(tmp_path: Path) -> TemplateSet:
    """The test flow's templates, the SMS confirmation naming the appointment's location."""
    names = tuple(m.template for stage in FLOW.stages for m in stage.messages)
    root = write_templates(tmp_path, names)
    for language in ("en", "es"):
        (root / "sms" / language / "confirmation.j2").write_text(
            "Booked at {{ appointment.location }}.\n"
        )
    return TemplateSet(root)


def test_a_rendered_message_the_store_refuses_fails_alone_and_the_batch_is_sent(
    build_runtime: BuildRuntime, location_templates: TemplateSet
) -> None:
    runtime = build_runtime(template_set=location_templates)
    if runtime.store.dialect != "postgresql":
        pytest.skip("SQLite stores a NUL in text; PostgreSQL refuses it")
    _two_patients(runtime)
    # A NUL in the location, as JSON text holds it: the journey reads back, the
    # rendered SMS holds the NUL, and the sandbox outbox cannot store it.
    _execute(
        runtime.store,
        "UPDATE journeys SET state = replace(state, :old, :new) WHERE patient_id = 'p-1'",
        old='"location":"',
        new='"location":"Main\\u0000',
    )

    runtime.dispatcher.tick()

    assert _confirmation(runtime, "p-1") == ("failed", "store:DataError")
    assert _confirmation(runtime, "p-2") == ("sent", None)
    _assert_nothing_held_and_audited(runtime, "store:DataError")
    # The next ticks do not take it up again.
    runtime.clock.advance(runtime.dispatcher.lease * 2)
    runtime.dispatcher.tick()
    assert _confirmation(runtime, "p-1") == ("failed", "store:DataError")
