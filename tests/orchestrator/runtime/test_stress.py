"""Stress (issue 13, defect 1): cancels, reschedules and opt-outs racing a running dispatcher.

The dispatcher runs on a thread of its own, as in the embedded service,
ticking as fast as it can on the sandbox connectors. This thread moves a
virtual clock a minute at a time, so that each step brings a few patients'
reminders due, and at once sends those patients an event that cancels,
moves or forbids them. Whatever the interleaving, the invariant checker
must find nothing: no send after a cancellation, nothing sent twice, every
due message final. Sizes are small enough for a few seconds per store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import cycle
from typing import Any

from connectors.sandbox import SandboxConnector
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel, Event
from orchestrator.service import DispatchLoop
from orchestrator.store import SqlStore, check_invariants
from tests.builders import T0, make_event, make_patient
from tests.orchestrator.runtime.conftest import BuildRuntime

PATIENTS = 80
PER_STEP = 10  # patients whose reminder falls due at each minute
SEND_SECONDS = 0.005


def racing_event(
    kind: str, n: int, patient: dict[str, Any], start: datetime, now: datetime
) -> Event:
    """An event for patient `n` that cancels, moves or forbids (SMS) its reminder."""
    options: dict[str, Any] = {
        "appointment.cancelled": {"appointment_id": f"a-{n}"},
        "appointment.rescheduled": {"appointment_id": f"a-{n}", "start": start + timedelta(days=1)},
        "consent.opted_out": {"appointment_id": None, "attributes": {"channel": "sms"}},
    }[kind]
    return make_event(kind, patient=patient, occurred_at=now, **options)


def test_cancels_reschedules_and_opt_outs_racing_the_dispatcher_break_no_invariant(
    build_runtime: BuildRuntime, store: SqlStore, clock: VirtualClock
) -> None:
    # One message per claim, each send taking a few milliseconds: the step's
    # reminders are claimed one by one while its events are being written.
    slow = {c: SandboxConnector(store, c, clock, SEND_SECONDS) for c in Channel}
    runtime = build_runtime(connectors=slow, batch=1)
    patients = [
        make_patient(f"p-{n}", phone=f"+1555555{n % 100:04d}", email=f"p{n}@example.org")
        for n in range(PATIENTS)
    ]
    # Each patient's 72-hour reminder falls due at minute n // PER_STEP.
    starts = [T0 + timedelta(hours=72, minutes=1 + n // PER_STEP) for n in range(PATIENTS)]
    runtime.process(
        *(
            make_event(start=start, patient=patient, appointment_id=f"a-{n}")
            for n, (patient, start) in enumerate(zip(patients, starts, strict=True))
        )
    )
    kinds = cycle(("appointment.cancelled", "appointment.rescheduled", "consent.opted_out"))
    loop = DispatchLoop(runtime.dispatcher.tick, poll=0.001, clock=runtime.clock)
    loop.start()
    try:
        for step in range(0, PATIENTS, PER_STEP):
            clock.advance(timedelta(minutes=1))
            # One batch of events, one transaction: a long write for the claims to race.
            runtime.process(
                *(
                    racing_event(kind, n, patients[n], starts[n], clock.now())
                    for n, kind in zip(range(step, step + PER_STEP), kinds, strict=False)
                )
            )
    finally:
        loop.stop(timeout=30)
    assert loop.error is None

    runtime.run_until_idle()

    report = check_invariants(runtime.store, due_before=clock.now())
    assert report.violations == ()
