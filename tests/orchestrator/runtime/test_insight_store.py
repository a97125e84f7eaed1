"""The journey map's figures read from the store (each backend) equal the hand counts."""

from __future__ import annotations

from orchestrator.insight.reading import measured
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
