"""The embedded service object itself."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.clock import VirtualClock
from orchestrator.settings import Settings
from tests.conftest import ROOT
from tests.inbound_service import build_service


def test_the_service_prints_short_so_a_failing_fuzz_example_stays_readable(
    store_url: str,
) -> None:
    # Hypothesis prints every argument of a failing example, fixtures included, and
    # a warning about a huge repr (an error here) then hid the failure itself.
    service = build_service(
        Settings(db=store_url, flows=ROOT / "flows", templates=ROOT / "templates"),
        VirtualClock(datetime(2026, 3, 1, tzinfo=UTC)),
    )
    try:
        printed = repr(service)
    finally:
        service.store.engine.dispose()

    assert len(printed) < 200
    assert service.store.dialect in printed
