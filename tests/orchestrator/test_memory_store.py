"""The in-memory store: what it promises beyond the processor and dispatcher suites it runs.

Those suites (tests/orchestrator/runtime/test_processor.py, test_dispatcher.py)
run on it as on SQLite and PostgreSQL; these tests hold what they do not reach.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from orchestrator.actions import ScheduleMessage
from orchestrator.engine import advance
from orchestrator.errors import StoreError
from orchestrator.journey import Journey, ScheduledMessage
from orchestrator.memory_store import MemoryStore
from tests.builders import T0, at, make_event, make_flow
from tests.conftest import ROOT


def test_importing_the_memory_store_loads_no_sqlalchemy() -> None:
    code = (
        "import sys, orchestrator.memory_store\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_an_error_inside_a_unit_writes_nothing_of_it() -> None:
    store = MemoryStore()
    flow = make_flow()
    message = _scheduled_message(flow.id)

    with pytest.raises(RuntimeError), store.unit(T0) as unit:
        unit.mark_processed(make_event(start=at(days=8)))
        unit.schedule(message, "evt-1")
        raise RuntimeError("the batch broke")

    assert store.messages() == []
    assert store.audit() == []
    with store.unit(T0) as unit:
        assert unit.processed(["evt-1"]) == set()


def test_an_error_inside_together_puts_back_every_write_of_the_block() -> None:
    store = MemoryStore()
    with store.unit(T0) as unit:
        unit.schedule(_scheduled_message(make_flow().id), "evt-1")
    (claim,) = store.claim_due(T0, "d", T0 + timedelta(minutes=2), 10)

    with pytest.raises(StoreError), store.together():
        store.finish(claim.message, "d", T0, "suppressed", "consent")
        raise StoreError("store write failed: OperationalError")

    (row,) = store.messages()
    assert (row.status, row.reason) == ("claimed", None)
    assert [a.status for a in store.audit()] == ["scheduled"]


def test_a_flow_version_is_recorded_once() -> None:
    store = MemoryStore()
    store.record_flow_version("f", 1, "{}", T0)

    with pytest.raises(StoreError):
        store.record_flow_version("f", 1, "{}", T0)
    assert list(store.flow_versions()) == [("f", 1)]


def _scheduled_message(flow_id: str) -> ScheduledMessage:
    """The first message a booking schedules on the test flow."""
    flow = make_flow()
    decision = advance(Journey.start("p-1", flow_id), make_event(start=at(days=8)), flow, T0)
    return next(a.message for a in decision.actions if isinstance(a, ScheduleMessage))
