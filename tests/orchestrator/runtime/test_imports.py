"""Imports of history: nothing an open import schedules is dispatched before it closes.

Each test runs the processor and the dispatcher on a real store (both
backends) and a virtual clock; "the dispatcher runs between batches" is a
`tick()` between two `process` calls.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator.store import ImportHolds
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import Runtime

HOLD = timedelta(minutes=5)
NOW = at(days=2, hours=4)  # Wednesday 12:00 in Chicago: no quiet hours


def booked(patient_id: str = "p-1", **kwargs: object) -> object:
    return make_event(
        "appointment.booked",
        id=f"evt-book-{patient_id}",
        occurred_at=at(days=2),
        patient=make_patient(patient_id),
        appointment_id=f"a-{patient_id}",
        start=at(days=9),
        **kwargs,
    )


def cancelled(patient_id: str = "p-1") -> object:
    return make_event(
        "appointment.cancelled",
        id=f"evt-cancel-{patient_id}",
        occurred_at=at(days=2, hours=1),
        patient=make_patient(patient_id),
        appointment_id=f"a-{patient_id}",
        start=at(days=9),
    )


def sent_keys(runtime: Runtime) -> set[str]:
    return {key for key, _ in runtime.outbox()}


def test_without_an_import_the_dispatcher_sends_what_a_later_line_would_cancel(
    runtime: Runtime,
) -> None:
    runtime.clock.move_to(NOW)
    runtime.process(booked())
    runtime.dispatcher.tick()  # between the batches

    runtime.process(cancelled())

    assert runtime.message("confirmation").key in sent_keys(runtime)


def test_a_message_an_open_import_scheduled_is_not_sent_before_a_later_line_cancels_it(
    runtime: Runtime,
) -> None:
    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)

    runtime.processor.process([booked()], hold=holds.renew(opened.import_id, NOW, HOLD))
    runtime.dispatcher.tick()
    runtime.processor.process([cancelled()], hold=holds.renew(opened.import_id, NOW, HOLD))
    holds.close(opened.import_id, NOW)
    runtime.run_until(NOW + timedelta(hours=1))

    confirmation = runtime.message("confirmation")
    assert confirmation.status == "cancelled"
    assert sent_keys(runtime) == set()


def test_a_closed_import_releases_its_messages_at_their_own_due_times(runtime: Runtime) -> None:
    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)
    runtime.processor.process([booked()], hold=opened)
    runtime.dispatcher.tick()
    assert sent_keys(runtime) == set()

    assert holds.close(opened.import_id, NOW) == len(runtime.store.messages())
    runtime.dispatcher.tick()

    assert sent_keys(runtime) == {runtime.message("confirmation").key}
    # Not pulled forward: the reminders still wait for their own time.
    assert runtime.message("reminder_72h").status == "scheduled"
    assert runtime.message("reminder_72h").due_at == at(days=6)


def test_each_batch_renews_the_hold_of_what_earlier_batches_scheduled(runtime: Runtime) -> None:
    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)
    runtime.processor.process([booked()], hold=opened)

    runtime.clock.advance(HOLD - timedelta(seconds=1))
    renewed = holds.renew(opened.import_id, runtime.clock.now(), HOLD)
    runtime.clock.advance(timedelta(seconds=2))  # past the first hold, within the renewed one
    runtime.dispatcher.tick()

    assert renewed is not None
    assert sent_keys(runtime) == set()


def test_an_import_whose_client_died_stops_holding_when_its_hold_runs_out(
    runtime: Runtime,
) -> None:
    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)
    runtime.processor.process([booked()], hold=opened)
    # The client is killed here: nothing renews or closes the import.

    runtime.clock.advance(HOLD - timedelta(seconds=1))
    runtime.dispatcher.tick()
    assert sent_keys(runtime) == set()
    runtime.clock.advance(timedelta(seconds=1))
    runtime.dispatcher.tick()

    assert runtime.message("confirmation").key in sent_keys(runtime)
    assert holds.renew(opened.import_id, runtime.clock.now(), HOLD) is None


def test_a_closed_or_unknown_import_cannot_be_renewed(runtime: Runtime) -> None:
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)

    assert holds.close(opened.import_id, NOW) == 0
    assert holds.close(opened.import_id, NOW) == 0
    assert holds.renew(opened.import_id, NOW, HOLD) is None
    assert holds.renew("no-such-import", NOW, HOLD) is None
    assert holds.close("no-such-import", NOW) is None


def test_live_traffic_for_other_patients_flows_while_an_import_is_open(runtime: Runtime) -> None:
    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)
    runtime.processor.process([booked("p-1")], hold=opened)

    runtime.process(booked("p-2"))
    runtime.dispatcher.tick()

    assert sent_keys(runtime) == {runtime.message("confirmation", "p-2").key}


def test_a_held_message_that_does_not_read_back_fails_alone_and_the_rest_is_released(
    runtime: Runtime,
) -> None:
    from sqlalchemy import update

    from orchestrator.store.tables import ScheduledMessageRow

    runtime.clock.move_to(NOW)
    holds = ImportHolds(runtime.store.transactions)
    opened = holds.open(NOW, HOLD)
    runtime.processor.process([booked("p-1"), booked("p-2")], hold=opened)
    broken = runtime.message("confirmation", "p-1").key
    with runtime.store.transactions.write() as c:
        c.execute(
            update(ScheduledMessageRow)
            .where(ScheduledMessageRow.key == broken)
            .values(payload='{"key": ' + "[" * 5000 + "]" * 5000 + "}")
        )

    assert holds.close(opened.import_id, NOW) == len(runtime.store.messages())
    runtime.dispatcher.tick()

    assert sent_keys(runtime) == {runtime.message("confirmation", "p-2").key}
    assert runtime.message("confirmation", "p-1").status == "failed"
