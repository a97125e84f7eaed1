"""Parity: `simulate` and the embedded runtime make the same decisions about the same stream.

The runtime side is what `orchestrator run` runs, on SQLite: the service
`EmbeddedService.build` makes, its HTTP app taking each event at `POST
/events`, and its own `DispatchLoop` ticking the dispatcher. Only time is
virtual: the loop idles through a `wait` that moves a `VirtualClock` to
whatever comes first (an event arriving, a message falling due, the poll),
and posts the events that arrived. Nothing here steps the dispatcher. The
simulate side is `simulate` on the in-memory store. Their audit logs must be
identical, line for line.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.api.app import create_app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.flows import load_flows
from orchestrator.runtime.rendering import Organisation
from orchestrator.service import DispatchLoop, EmbeddedService
from orchestrator.settings import Settings
from orchestrator.simulate import PlayOrder, in_history_order, simulate
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet
from tests.live import TestClient
from tests.samples import ROOT, sample_events

SAMPLES = sorted(p.stem for p in (ROOT / "samples" / "events").glob("*.jsonl"))
# The loop idles this long at most: longer than any stream, so it idles until woken.
_POLL_SECONDS = 10 * 365 * 24 * 3600.0

Document = dict[str, Any]


class Arrivals:
    """The service's surroundings on a virtual clock: its `DispatchLoop`'s `wait`.

    Each event arrives when the clock reaches the time it occurred, or at
    once if the clock is past it (a late event); the loop is woken by an
    arrival, by the next message falling due, or by its poll, whichever is
    first. An event arriving at the instant a message falls due goes first.
    """

    def __init__(
        self,
        service: EmbeddedService,
        clock: VirtualClock,
        client: TestClient,
        stream: list[Document],
    ) -> None:
        self.service = service
        self.clock = clock
        self.client = client
        self.pending = deque(stream)

    def wait(self, until: datetime) -> bool:
        now = self.clock.now()
        due = self.service.store.next_due()
        if due is not None and due <= now:
            due = None  # due but not claimable (held): only an arrival changes that
        arrival = max(_occurred(self.pending[0]), now) if self.pending else None
        if due is None and arrival is None:
            return True  # nothing will ever happen: the loop stops
        wake = min(t for t in (until, due, arrival) if t is not None)
        self.clock.move_to(wake)
        while self.pending and _occurred(self.pending[0]) <= self.clock.now():
            self._post(self.pending.popleft())
        return False

    def _post(self, document: Document) -> None:
        response = self.client.post("/events", json=document)
        assert response.status_code == 202, response.text
        assert [r["status"] for r in response.json()["results"]] != ["rejected"]


def _occurred(document: Document) -> datetime:
    return datetime.fromisoformat(document["occurred_at"])


def run_the_service(stream: list[Document], directory: Path) -> list[str]:
    """The service's audit log after `stream` arrived, in its order, on a virtual clock."""
    settings = Settings(
        db=f"sqlite:///{directory / 'o.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        dispatch_poll_seconds=_POLL_SECONDS,
    )
    clock = VirtualClock(_occurred(stream[0]))
    service = EmbeddedService.build(settings, clock=clock)
    try:
        with TestClient(create_app(service, run_dispatcher=False)) as client:
            arrivals = Arrivals(service, clock, client, stream)
            wait = arrivals.wait
            loop = DispatchLoop(
                service.tick, settings.dispatch_poll_seconds, service.clock, wait=wait
            )
            loop.run()
        assert loop.error is None and loop.store_error is None
        assert not arrivals.pending
        return [json.dumps(r.as_json(), sort_keys=True) for r in service.store.audit()]
    finally:
        service.store.engine.dispose()


def run_simulate(stream: list[Document], order: PlayOrder) -> list[str]:
    templates = _templates()
    flows = load_flows(
        [ROOT / "flows"], TemplateCheck(templates, Organisation.of(Settings()))
    ).flows
    events = [parse_event(document) for document in stream]
    decisions = simulate(events, flows, templates, order=order)
    return [json.dumps(r.as_json(), sort_keys=True) for r in decisions]


def _templates() -> TemplateSet:
    return TemplateSet(ROOT / "templates")


def fed_as(stream: list[Document], order: PlayOrder) -> list[Document]:
    """The stream as the service receives it: a history file plays in the order it occurred."""
    if order is PlayOrder.ARRIVAL:
        return stream
    # Sorted as `in_history_order` sorts (stable), by the parsed events' keys.
    keys = [parse_event(document).sort_key() for document in stream]
    return [stream[i] for i in sorted(range(len(stream)), key=keys.__getitem__)]


@pytest.mark.parametrize("order", list(PlayOrder))
@pytest.mark.parametrize("name", SAMPLES)
def test_simulate_prints_the_decisions_the_embedded_runtime_audits(
    name: str, order: PlayOrder, tmp_path: Path
) -> None:
    # Bookings, reschedules, cancellations, no-shows, opt-outs, quiet-hour deferrals.
    stream = sample_events(name)

    simulated = run_simulate(stream, order)

    assert simulated == run_the_service(fed_as(stream, order), tmp_path)
    assert any('"status": "sent"' in line for line in simulated)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_shuffled_stream_with_duplicates_decides_the_same_in_both(data: st.DataObject) -> None:
    stream = sample_events(data.draw(st.sampled_from(SAMPLES)))
    again = data.draw(st.lists(st.sampled_from(stream), max_size=6))
    shuffled = data.draw(st.permutations(stream + again))
    order = data.draw(st.sampled_from(list(PlayOrder)))

    with tempfile.TemporaryDirectory() as directory:
        service = run_the_service(fed_as(shuffled, order), Path(directory))
    assert run_simulate(shuffled, order) == service


def test_history_order_is_the_engines_order() -> None:
    stream = sample_events("knee-replacement")
    events = [parse_event(d) for d in fed_as(stream, PlayOrder.OCCURRED)]
    assert events == in_history_order(parse_event(d) for d in stream)
