"""Fuzzing `POST /events`: hostile events mixed with good ones, on SQLite and PostgreSQL.

Whatever the mix, the route answers below 500, the service stays up, every
refused input is one more row in the rejected-input table, and every good
event is processed. A JSON array that cannot be read within the limits is
refused whole (400, one row); NDJSON is judged line by line.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.event import bound_id
from tests.builders import at, make_event_data, make_patient
from tests.orchestrator.api.served import NDJSON, Served, served

_numbers = itertools.count(1)


@dataclass(frozen=True)
class Item:
    """One line or array element: its JSON text and what the service must make of it."""

    text: str
    expect: str  # "good", "bad event" (rejected alone), "unreadable" (not JSON within limits)
    id: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:
        # Hostile texts run to hundreds of KiB: a falsifying example must stay readable.
        head = self.text if len(self.text) <= 120 else f"{self.text[:60]}...{self.text[-40:]}"
        return f"Item({self.expect!r}, {len(self.text)} chars: {head!r})"


def _good(long_ids: bool) -> Item:
    number = next(_numbers)
    suffix = "-" + "9" * 250 if long_ids else ""
    event_id, patient = f"evt-fz-{number}{suffix}", f"p-fz-{number}{suffix}"
    data = make_event_data(id=event_id, patient=make_patient(patient), start=at(days=7))
    return Item(json.dumps(data), "good", bound_id(event_id), bound_id(patient))


TEXT_FIELDS = ["id", "patient.id", "appointment.location", "appointment.service", "source"]
TIME_FIELDS = ["occurred_at", "appointment.start"]


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    holder = data
    for step in parents:
        holder = holder[step]
    holder[last] = value
    return data


@st.composite
def hostile(draw: st.DrawFn) -> Item:
    good = json.loads(_good(False).text)
    kind = draw(
        st.sampled_from(["unsafe text", "overflow", "unix time", "attribute depth", "deep", "huge"])
    )
    if kind == "unsafe text":
        bad = draw(st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]))
        where = draw(st.sampled_from(TEXT_FIELDS))
        at_ = draw(st.integers(0, 5))
        text = "x" * at_ + bad + "y"
        return Item(json.dumps(_with(good, where, text)), "bad event")
    if kind == "overflow":
        value = draw(
            st.sampled_from(
                ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T20:00-14:00"]
            )
        )
        return Item(json.dumps(_with(good, draw(st.sampled_from(TIME_FIELDS)), value)), "bad event")
    if kind == "unix time":
        value = draw(st.one_of(st.integers(0, 2**40), st.floats(0, 2e9), st.just("1767225600")))
        return Item(json.dumps(_with(good, "occurred_at", value)), "bad event")
    if kind == "attribute depth":
        # Past the attribute limit (16) but within the document's (64) even inside a
        # JSON array: 63 levels under "extra" in an array is 65 in all, which the
        # body refuses whole (the "deep" kind covers that).
        depth = draw(st.integers(17, 62))
        text = json.dumps(good)[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
        return Item(text, "bad event")
    if kind == "deep":
        depth = draw(st.sampled_from([65, 200, 989, 990, 991, 5000, 50_000]))
        return Item("[" * depth + "]" * depth, "unreadable")
    digits = draw(st.integers(20, 6000))
    return Item(json.dumps(good)[:-1] + ', "n": -' + "7" * digits + "}", "unreadable")


items = st.one_of(st.builds(_good, st.booleans()), hostile())


@pytest.fixture
def app(store_url: str) -> Iterator[Served]:
    with served(store_url) as opened:
        yield opened


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.lists(items, min_size=1, max_size=5), as_array=st.booleans())
def test_hostile_events_never_answer_5xx_are_kept_and_leave_the_good_ones_processed(
    app: Served, body: list[Item], as_array: bool
) -> None:
    kept = app.kept()
    if as_array:
        text = "[" + ", ".join(i.text for i in body) + "]"
        response = app.client.post("/events", content=text.encode())
    else:
        text = "".join(i.text + "\n" for i in body)
        response = app.client.post("/events", content=text.encode(), headers=NDJSON)

    assert response.status_code < 500, response.text
    assert app.alive()
    if as_array and any(i.expect == "unreadable" for i in body):
        assert response.status_code == 400
        assert app.kept() == kept + 1
        return
    results = response.json()["results"]
    assert len(results) == len(body)
    for item, result in zip(body, results, strict=True):
        if item.expect == "good":
            assert (result["id"], result["status"]) in (
                (item.id, "accepted"),
                (item.id, "duplicate"),
            )
            assert app.service.store.episodes(item.patient or ""), "a good event was not processed"
        else:
            assert result["status"] == "rejected", result
    assert app.kept() == kept + sum(i.expect != "good" for i in body)
