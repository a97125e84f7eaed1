"""A patient whose stored journey does not read back is quarantined: their events are kept, others go on.

The unreadable journey is written straight into the store, as a row written
before the input boundary was closed (or by hand) would hold it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from orchestrator.ports import EventResult
from tests import store_reads
from tests.builders import at, make_event, make_patient
from tests.orchestrator.runtime.conftest import Runtime

START = at(days=8)


LATER = make_event("appointment.checked_in", id="evt-later", start=START)


def _next_batch_after_corrupting(runtime: Runtime, statement: str, value: str) -> list[EventResult]:
    """Two patients booked; p-1's row corrupted by `statement`; then one event of each."""
    runtime.process(make_event(start=START), make_event(start=START, patient=make_patient("p-2")))
    with runtime.store.engine.begin() as connection:
        connection.execute(text(statement), {"s": value})
    other = make_event(
        "appointment.checked_in", id="evt-other", start=START, patient=make_patient("p-2")
    )

    results = runtime.process(LATER, other)

    assert [(r.id, r.status) for r in results] == [
        ("evt-later", "rejected"),
        ("evt-other", "accepted"),
    ]
    return results


@pytest.mark.parametrize("state", ["not JSON", "[" * 5000 + "]" * 5000, "{}"])
def test_events_of_a_patient_whose_journey_cannot_be_read_are_kept_and_the_batch_goes_on(
    runtime: Runtime, state: str
) -> None:
    results = _next_batch_after_corrupting(
        runtime, "UPDATE journeys SET state = :s WHERE patient_id = 'p-1'", state
    )

    assert "quarantined" in results[0].errors[0]
    [kept] = store_reads.rejected(runtime.store)
    assert kept.reason.startswith("event evt-later: quarantined: the patient's journey")
    assert b"evt-later" in kept.body
    # Once the journey is repaired (here: removed), the kept event is taken.
    with runtime.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM journeys WHERE patient_id = 'p-1'"))
    assert [r.status for r in runtime.process(LATER)] == ["accepted"]


@pytest.mark.parametrize("snapshot", ["not JSON", "[" * 5000 + "]" * 5000, '{"id": 7}'])
def test_events_of_a_patient_whose_record_cannot_be_read_are_kept_and_the_batch_goes_on(
    runtime: Runtime, snapshot: str
) -> None:
    _next_batch_after_corrupting(
        runtime, "UPDATE patients SET snapshot = :s WHERE id = 'p-1'", snapshot
    )

    [kept] = store_reads.rejected(runtime.store)
    assert kept.reason.startswith("event evt-later: quarantined: the patient's record")
