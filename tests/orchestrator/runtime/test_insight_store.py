"""The journey map's figures read from the store (each backend) equal the hand counts."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.insight.reading import measured
from orchestrator.policies import held_out
from tests.builders import at, make_event, make_patient
from tests.orchestrator.insight.stream import insight_flow, insight_stream
from tests.orchestrator.runtime.conftest import BuildRuntime

FLOW = insight_flow()


def test_figures_from_the_store_match_the_hand_counts(build_runtime: BuildRuntime) -> None:
    runtime = build_runtime({FLOW.id: FLOW})
    for event in insight_stream():
        runtime.at(event.occurred_at, event)
    runtime.run_until_idle()

    figures = measured(runtime.store, FLOW)

    assert (figures.episodes, figures.patients) == (5, 5)
    booked = figures.stage("booked")
    assert (booked.entered, booked.moved_on, booked.dropped_off, booked.still_here) == (6, 3, 1, 2)
    assert (booked.no_show.numerator, booked.no_show.denominator) == (1, 3)
    assert (booked.intake_completion.numerator, booked.intake_completion.denominator) == (1, 5)
    reply = booked.confirmation_by_reply
    assert (reply.numerator, reply.denominator) == (1, 5)
    assert figures.stage("referred").referral_to_booking.median == 48.0
    nudge = figures.message("intake_nudge")
    assert (nudge.scheduled, nudge.sent, nudge.cancelled) == (6, 3, 3)
    assert figures.message("confirmation").sent == 6
    assert figures.message("reminder_24h").scheduled == 7


def test_the_dispatcher_suppresses_a_held_out_message_in_the_audit(
    build_runtime: BuildRuntime,
) -> None:
    flow = insight_flow()
    stage = flow.stage("booked")
    messages = tuple(
        replace(m, holdout=30.0) if m.id == "confirmation" else m for m in stage.messages
    )
    flow = replace(
        flow,
        stages=tuple(replace(s, messages=messages) if s.id == "booked" else s for s in flow.stages),
    )
    runtime = build_runtime({flow.id: flow})
    patients = [f"p-{i}" for i in range(40)]
    runtime.process(
        *(
            make_event(
                "appointment.booked",
                id=f"book-{p}",
                patient=make_patient(p, phone=f"+155555501{i:02d}"),
                appointment_id=f"a-{p}",
                start=at(days=5),
            )
            for i, p in enumerate(patients)
        )
    )
    runtime.run_until(at(hours=1))

    final = {
        r.patient_id: (r.status, r.reason)
        for r in runtime.store.audit(flow=flow.id)
        if r.message == "confirmation" and r.status != "scheduled"
    }
    expected = {
        p: ("suppressed", "holdout") if held_out(p, flow.id, "confirmation", 30) else ("sent", None)
        for p in patients
    }
    assert final == expected
    assert 0 < sum(v[0] == "suppressed" for v in final.values()) < len(patients)
    figures = measured(runtime.store, flow)
    (holdout,) = figures.holdouts
    held = sum(v[0] == "suppressed" for v in final.values())
    assert (holdout.messaged.episodes, holdout.held_out.episodes) == (len(patients) - held, held)
