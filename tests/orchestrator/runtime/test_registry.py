"""Flow versions at run time: recorded in the store, refused when changed in place.

An episode stays on the flow version it started on: a restart with a new
version of a flow lets running episodes finish on the old one and starts new
episodes on the new one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import FlowError
from orchestrator.flows import FlowFile, FlowSet, load_flows
from orchestrator.runtime import FlowRegistry
from orchestrator.store import SqlStore
from tests.builders import T0, at, flow_data, make_event, make_patient
from tests.conftest import ROOT
from tests.orchestrator.runtime.conftest import BuildRuntime

FILE = Path("flows/test-flow.yaml")
START = at(days=8)
V2 = {"version": 2, "title": "Test flow, second edition"}


def flow_set(**overrides: Any) -> FlowSet:
    """The test flow as `load_flows` would return it, from `flow_data(**overrides)`."""
    document = FlowFile.model_validate(flow_data(**overrides))
    return FlowSet({document.id: document.to_core()}, {document.id: FILE}, {document.id: document})


def test_open_records_each_current_flow_version(store: SqlStore) -> None:
    registry = FlowRegistry.open(flow_set(), store, T0)

    assert set(store.flow_versions()) == {("test-flow", 1)}
    assert registry.current["test-flow"].version == 1
    assert registry.version("test-flow", 1) == registry.current["test-flow"]


def test_reopening_unchanged_flows_records_nothing_new(store: SqlStore) -> None:
    FlowRegistry.open(flow_set(), store, T0)
    recorded = store.flow_versions()

    FlowRegistry.open(flow_set(), store, at(days=1))

    assert store.flow_versions() == recorded


def test_changed_flow_without_a_version_bump_is_refused(store: SqlStore) -> None:
    FlowRegistry.open(flow_set(), store, T0)

    with pytest.raises(FlowError) as raised:
        FlowRegistry.open(flow_set(title="Test flow, edited"), store, at(days=1))

    (problem,) = raised.value.problems
    assert (problem.file, problem.path) == (str(FILE), "version")
    assert str(FILE) in str(raised.value)
    assert "bump the version" in str(raised.value)
    assert set(store.flow_versions()) == {("test-flow", 1)}


def test_new_version_is_current_and_the_older_one_is_kept_whole(store: SqlStore) -> None:
    FlowRegistry.open(flow_set(), store, T0)

    registry = FlowRegistry.open(flow_set(**V2), store, at(days=1))

    assert registry.current["test-flow"].version == 2
    older = registry.version("test-flow", 1)
    assert older.version == 1
    # Its starting triggers stay: a re-fold of its journeys opens their episodes
    # again (what starts none there is said per event: `versions.advance_versions`).
    assert older.starts_on == registry.current["test-flow"].starts_on
    assert [s.id for s in older.stages] == ["booked", "visited", "rebooking"]
    assert set(store.flow_versions()) == {("test-flow", 1), ("test-flow", 2)}


def test_shipped_flows_are_recorded_and_reopen_unchanged(store: SqlStore) -> None:
    flows = load_flows([ROOT / "flows"])

    FlowRegistry.open(flows, store, T0)
    FlowRegistry.open(flows, store, at(days=1))

    assert set(store.flow_versions()) == {(f.id, f.version) for f in flows.flows.values()}


def test_restart_on_a_new_version_keeps_running_episodes_on_theirs(
    build_runtime: BuildRuntime, store: SqlStore
) -> None:
    before = build_runtime(FlowRegistry.open(flow_set(), store, T0))
    before.process(make_event(start=START))

    after = build_runtime(FlowRegistry.open(flow_set(**V2), store, at(hours=1)))
    after.clock.move_to(at(hours=1))
    newcomer = make_patient("p-2", phone="+15555550102", email="p2@example.org")
    after.process(make_event(start=START, occurred_at=at(hours=1), patient=newcomer))
    after.run_until(START + timedelta(hours=1))
    after.process(make_event("appointment.completed", start=START, occurred_at=after.clock.now()))
    after.run_until_idle()

    first = store.messages(patient_id="p-1")
    assert {m.flow_version for m in first} == {1}
    assert "survey" in {m.message for m in first}
    assert {m.flow_version for m in store.messages(patient_id="p-2")} == {2}
    assert [e.flow_version for e in store.episodes("p-1")] == [1]
    assert [e.flow_version for e in store.episodes("p-2")] == [2]
    assert {m.status for m in store.messages()} == {"sent"}


def test_rebooking_an_episode_of_an_older_version_starts_none_on_the_new_one(
    build_runtime: BuildRuntime, store: SqlStore
) -> None:
    before = build_runtime(FlowRegistry.open(flow_set(), store, T0))
    before.process(make_event(start=START))
    before.process(make_event("appointment.cancelled", start=START, occurred_at=at(hours=1)))

    after = build_runtime(FlowRegistry.open(flow_set(**V2), store, at(hours=2)))
    after.clock.move_to(at(hours=2))
    after.process(make_event(appointment_id="a-2", start=START, occurred_at=at(hours=2)))

    # The rebooking continues the version-1 episode; no second episode, no second set of reminders.
    assert [(e.flow_version, e.stage) for e in store.episodes("p-1")] == [(1, "booked")]
    assert {m.flow_version for m in store.messages(patient_id="p-1")} == {1}


def test_an_event_an_older_version_took_stays_its_own_when_a_late_event_refolds(
    build_runtime: BuildRuntime, store: SqlStore
) -> None:
    before = build_runtime(FlowRegistry.open(flow_set(), store, T0))
    before.process(make_event(start=START))
    after = build_runtime(FlowRegistry.open(flow_set(**V2), store, at(hours=2)))
    after.clock.move_to(at(hours=5))
    a3 = {"appointment_id": "a-3", "start": START}
    after.process(
        make_event(occurred_at=at(hours=2), **a3),  # a version-2 episode for a-3
        make_event("appointment.cancelled", start=START, occurred_at=at(hours=3)),
        # Version 1's episode, now rebooking, takes the rebooking of its appointment.
        make_event(appointment_id="a-2", start=START, occurred_at=at(hours=4)),
    )
    # a-3 was cancelled before that rebooking, but the news comes late: version 2's
    # journey is folded again, and finds its own episode rebooking too.
    after.process(make_event("appointment.cancelled", occurred_at=at(hours=2, minutes=30), **a3))

    # Nothing of version 2 waits for a visit: a-3 is cancelled, and a-2 is version 1's.
    v2 = [m for m in store.messages(patient_id="p-1") if m.flow_version == 2]
    assert [m.message for m in v2 if m.status == "scheduled"] == ["rebooking_nudge"]
    assert [(e.flow_version, e.stage) for e in store.episodes("p-1")] == [
        (1, "booked"),
        (2, "rebooking"),
    ]


def test_a_late_event_refolding_an_older_versions_journey_keeps_its_episode(
    build_runtime: BuildRuntime, store: SqlStore
) -> None:
    before = build_runtime(FlowRegistry.open(flow_set(), store, T0))
    before.process(make_event(start=START))
    scheduled = {m.key for m in store.messages(patient_id="p-1")}
    after = build_runtime(FlowRegistry.open(flow_set(**V2), store, at(hours=2)))
    after.clock.move_to(at(hours=2))

    # Intake was done an hour before the booking; the news comes late and is
    # folded in its place, before the event that opened version 1's episode.
    after.process(make_event("intake.completed", occurred_at=at(hours=-1)))

    rows = store.messages(patient_id="p-1")
    assert {m.key for m in rows if m.status == "scheduled"} == scheduled
    assert [(e.flow_version, e.stage, e.status) for e in store.episodes("p-1")] == [
        (1, "booked", "active")
    ]


def test_a_new_booking_after_the_bump_starts_no_episode_on_the_older_version_in_a_refold(
    build_runtime: BuildRuntime, store: SqlStore
) -> None:
    before = build_runtime(FlowRegistry.open(flow_set(), store, T0))
    before.process(make_event(start=START))
    after = build_runtime(FlowRegistry.open(flow_set(**V2), store, at(hours=2)))
    after.clock.move_to(at(hours=5))
    after.process(make_event(appointment_id="a-2", start=START, occurred_at=at(hours=4)))
    # A late event re-folds version 1's journey with its full flow, booking included.
    after.process(make_event("intake.completed", occurred_at=at(hours=3)))

    versions = [(e.flow_version, e.stage) for e in store.episodes("p-1")]
    assert sorted(versions) == [(1, "booked"), (2, "booked")]


def test_a_version_recorded_before_a_schema_field_was_added_reopens_unchanged(
    store: SqlStore,
) -> None:
    # What an older release recorded: the same flow, without the fields added since
    # (stage notes, message holdouts and variants, personas).
    document = flow_set().documents["test-flow"]
    dumped = json.loads(document.model_dump_json(by_alias=True))
    del dumped["personas"]
    for stage in dumped["stages"]:
        del stage["notes"]
        for message in stage["messages"]:
            del message["holdout"], message["variants"]
    store.record_flow_version("test-flow", 1, json.dumps(dumped), T0)

    registry = FlowRegistry.open(flow_set(), store, T0 + timedelta(days=1))

    assert registry.current["test-flow"].version == 1
    with pytest.raises(FlowError, match="bump the version"):
        FlowRegistry.open(flow_set(title="Changed in place"), store, T0 + timedelta(days=2))


def test_a_newer_version_in_the_store_stays_current_over_an_older_file(store: SqlStore) -> None:
    # Version 2 was published (in the console, or by another file); the file still says 1.
    FlowRegistry.open(flow_set(), store, T0)
    v2 = FlowFile.model_validate(flow_data(**V2))
    store.record_flow_version("test-flow", 2, v2.model_dump_json(by_alias=True), T0)

    registry = FlowRegistry.open(flow_set(), store, T0)

    assert registry.current["test-flow"].version == 2
    assert registry.current["test-flow"].title == V2["title"]
    assert registry.behind("test-flow") == str(FILE)
    assert set(registry.versions) == {("test-flow", 1), ("test-flow", 2)}


def test_reloaded_takes_up_versions_recorded_since_and_their_templates(store: SqlStore) -> None:
    registry = FlowRegistry.open(flow_set(), store, T0)
    assert registry.behind("test-flow") is None
    v2 = FlowFile.model_validate(flow_data(**V2))
    store.record_flow_version("test-flow", 2, v2.model_dump_json(by_alias=True), T0)
    stored = {("test-flow", 2): {"sms/en/x.j2": "hello"}}

    reloaded = registry.reloaded(store, stored)

    assert reloaded.current["test-flow"].version == 2
    assert reloaded.templates == stored
    # The flow objects already held are kept (a version never changes).
    assert reloaded.versions[("test-flow", 1)] is registry.versions[("test-flow", 1)]
    assert reloaded.behind("test-flow") == str(FILE)


def test_a_recorded_version_whose_source_says_another_is_refused(store: SqlStore) -> None:
    # Row 2 holds a flow that says version 1: run, it would stand in for version 1.
    registry = FlowRegistry.open(flow_set(), store, T0)
    v1_edited = FlowFile.model_validate(flow_data(title="Edited, version line missed"))
    store.record_flow_version("test-flow", 2, v1_edited.model_dump_json(by_alias=True), T0)

    with pytest.raises(FlowError) as raised:
        registry.reloaded(store, {})
    with pytest.raises(FlowError):
        FlowRegistry.open(flow_set(), store, T0)

    (problem,) = raised.value.problems
    assert "recorded as version 2 but its source says version 1" in problem.message
    assert registry.current["test-flow"].title != "Edited, version line missed"
