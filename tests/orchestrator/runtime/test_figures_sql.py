"""The figures aggregated in SQL equal the figures computed from the journeys.

`insight.figures.flow_figures` over every journey is the reference; random
histories go through the real processor and dispatcher into SQLite and
PostgreSQL, and the SQL figures (`store/figures.py` over `stage_visits`) must
match it for every persona.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from orchestrator.event import Event
from orchestrator.flows.model import Flow
from orchestrator.insight.figures import FigureFilter, FlowFigures, Hours
from orchestrator.insight.reading import from_journeys, measured
from orchestrator.memory_store import MemoryStore
from orchestrator.store import SqlStore
from tests.builders import at, make_event, make_patient
from tests.orchestrator.insight.stream import insight_flow, insight_stream
from tests.orchestrator.runtime.conftest import BuildRuntime

KINDS = (
    "book",
    "book",
    "rescheduled",
    "cancelled",
    "no_show",
    "checked_in",
    "completed",
    "intake.sent",
    "intake.completed",
    "message.replied",
    "referral.received",
    "consent.opted_out",
)
STEPS = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(KINDS), st.integers(1, 50)),
    min_size=1,
    max_size=14,
)
_runs = itertools.count()


def held_out_flow() -> Flow:
    """The insight flow with its confirmation held out for some, so holdouts are counted."""
    flow = insight_flow()
    stage = flow.stage("booked")
    messages = tuple(
        replace(m, holdout=40.0) if m.id == "confirmation" else m for m in stage.messages
    )
    return replace(
        flow,
        stages=tuple(replace(s, messages=messages) if s.id == "booked" else s for s in flow.stages),
    )


def history(steps: list[tuple[int, str, int]], run: int) -> list[Event]:
    """Events from steps (patient, kind, hours after the last step), in their own time."""
    start = at(days=40 * run)
    events: list[Event] = []
    booked: dict[int, int] = {}
    for n, (who, kind, gap) in enumerate(steps):
        start += timedelta(hours=gap)
        pid = f"r{run}-p{who}"
        extra: dict[str, Any] = {}
        if who < 2:
            extra["caregivers"] = [
                {
                    "id": f"c-{pid}",
                    "relationship": "son",
                    "phone": "+15555550150",
                    "language": "en",
                    "receives": ["transport"],
                }
            ]
        patient = make_patient(pid, phone=f"+155555501{who:02d}", **extra)
        common: dict[str, Any] = {"id": f"r{run}-e{n}", "occurred_at": start, "patient": patient}
        if kind == "book":
            booked[who] = booked.get(who, 0) + 1
        appointment = f"a-{pid}-{booked.get(who, 0)}"
        if kind in ("book", "rescheduled"):
            event_type = "appointment.booked" if kind == "book" else "appointment.rescheduled"
            events.append(
                make_event(
                    event_type,
                    appointment_id=appointment,
                    start=start + timedelta(days=3),
                    **common,
                )
            )
        elif kind in ("cancelled", "no_show", "checked_in", "completed"):
            events.append(make_event(f"appointment.{kind}", appointment_id=appointment, **common))
        elif kind == "referral.received":
            events.append(
                make_event(
                    kind,
                    appointment_id=None,
                    attributes={"service": "cardiology.consult"},
                    **common,
                )
            )
        elif kind == "message.replied":
            events.append(make_event(kind, appointment_id=None, attributes={"body": "C"}, **common))
        else:
            events.append(make_event(kind, appointment_id=None, **common))
    return events


def comparable(figures: FlowFigures) -> FlowFigures:
    """Medians to 9 places: PostgreSQL interpolates where `statistics.median` averages."""
    return replace(
        figures,
        stages=tuple(
            replace(
                s,
                referral_to_booking=Hours(
                    s.referral_to_booking.count,
                    None
                    if s.referral_to_booking.median is None
                    else round(s.referral_to_booking.median, 9),
                ),
            )
            for s in figures.stages
        ),
    )


def assert_same_figures(store: SqlStore, flow: Flow) -> None:
    for persona in (None, "caregiver_coordinator", "self_managing"):
        expected = comparable(from_journeys(store, flow, persona))
        assert comparable(measured(store, flow, persona)) == expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_sql_figures_equal_the_figures_from_journeys(
    build_runtime: BuildRuntime, steps: list[tuple[int, str, int]]
) -> None:
    flow = held_out_flow()
    runtime = build_runtime({flow.id: flow})
    if isinstance(runtime.store, MemoryStore):
        pytest.skip("the memory store computes its figures from the journeys")
    events = history(steps, next(_runs))
    for event in events:
        runtime.at(event.occurred_at, event)
    runtime.run_until(events[-1].occurred_at + timedelta(days=5))
    assert isinstance(runtime.store, SqlStore)
    assert_same_figures(runtime.store, flow)


def test_the_known_stream_counts_the_same_both_ways(build_runtime: BuildRuntime) -> None:
    flow = insight_flow()
    runtime = build_runtime({flow.id: flow})
    if isinstance(runtime.store, MemoryStore):
        pytest.skip("the memory store computes its figures from the journeys")
    for event in insight_stream():
        runtime.at(event.occurred_at, event)
    runtime.run_until_idle()
    assert isinstance(runtime.store, SqlStore)
    assert_same_figures(runtime.store, flow)
    figures = measured(runtime.store, flow)
    assert figures.stage("booked").entered == 6
    # A filter on the version the episodes ran on, and one on another version.
    assert measured(runtime.store, flow, chosen=FigureFilter(version=flow.version)) == figures
    assert (
        measured(runtime.store, flow, chosen=FigureFilter(version=flow.version + 1)).episodes == 0
    )
    # The message figures by channel: the SMS ones and the e-mail ones add up to all sends.
    sent = {m.message_id: m.sent for m in figures.messages}
    by_channel = [
        {m.message_id: m.sent for m in measured(runtime.store, flow, chosen=c).messages}
        for c in (FigureFilter(channel="sms"), FigureFilter(channel="email"))
    ]
    assert {k: by_channel[0][k] + by_channel[1][k] for k in sent} == sent
    assert sum(by_channel[0].values()) > 0
    # A window before anything happened holds no episode and no send.
    before = measured(
        runtime.store, flow, chosen=FigureFilter(since=at(days=-30), until=at(days=-20))
    )
    assert (before.episodes, before.daily, before.stage("booked").entered) == (0, (), 0)


@pytest.mark.parametrize(
    "persona", ["x" * 100_000, "'; DROP TABLE stage_visits; --", "caregiver\x00coordinator"]
)
def test_a_hostile_persona_finds_nothing_and_breaks_nothing(
    build_runtime: BuildRuntime, persona: str
) -> None:
    flow = insight_flow()
    runtime = build_runtime({flow.id: flow})
    if isinstance(runtime.store, MemoryStore):
        pytest.skip("the memory store computes its figures from the journeys")
    for event in insight_stream():
        runtime.at(event.occurred_at, event)
    assert isinstance(runtime.store, SqlStore)
    try:
        figures = measured(runtime.store, flow, persona)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL refuses NUL in text: a clean refusal
        assert "\x00" in persona, exc
    else:
        assert (figures.episodes, figures.stage("booked").entered) == (0, 0)
    assert measured(runtime.store, flow).episodes == 5


def test_a_settled_episode_keeps_its_visits(build_runtime: BuildRuntime) -> None:
    flow = insight_flow()
    runtime = build_runtime({flow.id: flow})
    if isinstance(runtime.store, MemoryStore):
        pytest.skip("the memory store computes its figures from the journeys")
    assert isinstance(runtime.store, SqlStore)
    runtime.processor.settle_after = timedelta(days=2)
    patient = make_patient("p-1")
    first = [
        make_event("appointment.booked", id="b1", patient=patient, start=at(days=3)),
        make_event("appointment.completed", id="c1", occurred_at=at(days=3), patient=patient),
    ]
    # A new booking a month later, imported with the rest in one batch: the first
    # episode starts, ends and settles out of the journey in that batch.
    again = make_event(
        "appointment.booked",
        id="b2",
        occurred_at=at(days=30),
        patient=patient,
        appointment_id="a-2",
        start=at(days=33),
    )
    runtime.clock.move_to(at(days=30))
    runtime.process(*first, again)
    with runtime.store.transactions.read() as c:
        settled = c.execute(text("SELECT count(*) FROM episodes WHERE settled IS NOT NULL"))
        assert settled.scalar_one() == 1
    figures = measured(runtime.store, flow)
    assert figures.episodes == 2
    assert (figures.stage("booked").entered, figures.stage("visited").completed) == (2, 1)
    assert_same_figures(runtime.store, flow)


def test_running_episodes_by_version_are_counted_in_sql(build_runtime: BuildRuntime) -> None:
    flow = insight_flow()
    runtime = build_runtime({flow.id: flow})
    if isinstance(runtime.store, MemoryStore):
        pytest.skip("a SQL store's read")
    for event in insight_stream():
        runtime.at(event.occurred_at, event)
    assert isinstance(runtime.store, SqlStore)
    running = sum(
        e.status.value == "active"
        for _, journey in runtime.store.flow_journeys(flow.id)
        for e in journey.episodes
    )
    assert 0 < running < 5
    assert runtime.store.running_by_version(flow.id) == {flow.version: running}
