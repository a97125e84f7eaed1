"""`settle` with its fast paths decides exactly what it decided before them.

The oracle is the settle of kafka16 before the fast paths
(`tests/orchestrator/settle_reference.py`). Streams are the shipped samples on
the shipped flows and long dialysis-like histories on the test flow, shuffled
a few events at a time, with duplicates, processed on a clock that only moves
forward and crosses settle horizons: late events, events from the future, a
backlog replayed months after it occurred. Before every settle both take the
same journey; their results must be equal, field for field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrator.settle
from orchestrator.engine import advance
from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows import load_flows
from orchestrator.flows.model import Flow
from orchestrator.journey import Journey
from orchestrator.settle import settle
from tests.builders import make_flow
from tests.orchestrator.history import sessions
from tests.orchestrator.settle_reference import reference_settle
from tests.samples import ROOT, SAMPLE_FILES, sample_events

AFTER = timedelta(days=30)
AFTERS = [timedelta(hours=6), timedelta(days=1), timedelta(days=3), timedelta(days=30)]
Settler = Callable[[Journey, Flow, datetime, timedelta], orchestrator.settle.Settled]


@cache
def sample_flows() -> tuple[Flow, ...]:
    return tuple(load_flows([ROOT / "flows"]).flows.values())


@cache
def sample_stream() -> tuple[Event, ...]:
    events = [parse_event(e) for path in SAMPLE_FILES for e in sample_events(path.stem)]
    return tuple(sorted(events, key=Event.sort_key))


@st.composite
def arrivals(draw: st.DrawFn, stream: Sequence[Event]) -> list[tuple[Event, datetime]]:
    """`stream` shuffled a few events at a time, with duplicates, each with the
    processing clock when it is taken (never going back; ahead of the event,
    behind it, or months after it)."""
    order: list[int] = []
    width = draw(st.integers(min_value=1, max_value=8))
    for i in range(0, len(stream), width):
        order += draw(st.permutations(range(i, min(i + width, len(stream)))))
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        order.insert(draw(st.integers(0, len(order))), draw(st.integers(0, len(stream) - 1)))
    # Mostly a live feed (the clock near the events), with a few jumps: an outage
    # caught up, a backlog replayed long after.
    hours = st.integers(min_value=-2 * 24, max_value=4 * 24)
    jumps = draw(st.lists(st.integers(0, len(order) - 1), max_size=3))
    taken: list[tuple[Event, datetime]] = []
    now: datetime | None = None
    ahead = timedelta()
    for n, i in enumerate(order):
        event = stream[i]
        if n in jumps:
            ahead += timedelta(hours=draw(st.integers(min_value=1, max_value=90 * 24)))
        moment = event.occurred_at + ahead + timedelta(hours=draw(hours))
        now = moment if now is None or moment > now else now
        taken.append((event, now))
    return taken


def run(taken: list[tuple[Event, datetime]], flows: Sequence[Flow], after: timedelta) -> int:
    """Feed the events; before each settle compare with the oracle. How many settles."""
    journeys: dict[tuple[str, str], Journey] = {}
    compared = 0
    for event, now in taken:
        for flow in flows:
            if event.type not in flow.event_types:
                continue
            key = (event.patient.id, flow.id)
            before = journeys.get(key) or Journey.start(event.patient.id, flow.id)
            journey = advance(before, event, flow, now).journey
            if journey is before:
                continue
            expected = reference_settle(journey, flow, now, after)
            got = settle(journey, flow, now, after)
            assert got == expected
            journeys[key] = got.journey
            compared += 1
    return compared


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), after=st.sampled_from(AFTERS))
def test_the_samples_settle_as_they_did_on_any_order_and_clock(
    data: st.DataObject, after: timedelta
) -> None:
    taken = data.draw(arrivals(sample_stream()))
    assert run(taken, sample_flows(), after) > 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), count=st.integers(min_value=5, max_value=30), after=st.sampled_from(AFTERS))
def test_long_histories_settle_as_they_did_on_any_order_and_clock(
    data: st.DataObject, count: int, after: timedelta
) -> None:
    taken = data.draw(arrivals(sessions(count)))
    assert run(taken, [make_flow()], after) > 0


def test_a_backlog_from_before_the_horizon_settles_with_no_fold_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Events months old, as a replayed backlog: each one moves the checkpoint
    # up, and the journey as it stands is already their fold.
    flow = make_flow()
    stream = sessions(7)
    now = stream[-1].occurred_at + timedelta(days=90)
    journey = Journey.start("p-1", flow.id)
    for event in stream[:-1]:
        journey = reference_settle(advance(journey, event, flow, now).journey, flow, now, AFTER)
        journey = journey.journey
    assert not journey.events and journey.checkpoint is not None
    moved = advance(journey, stream[-1], flow, now).journey
    expected = reference_settle(moved, flow, now, AFTER)

    def no_fold(*_: object) -> None:
        raise AssertionError("settle folded the events again")

    monkeypatch.setattr(orchestrator.settle.Fold, "resume", no_fold)
    got = settle(moved, flow, now, AFTER)

    assert got == expected
    assert not got.journey.events
