"""The what-if of a draft: history replayed under the running flows and the draft, diffed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.event import Event, EventType
from orchestrator.flows.model import Flow
from orchestrator.flows.schema import FlowFile
from orchestrator.insight.compare import Comparison
from orchestrator.memory_store import MemoryStore
from orchestrator.policies.holdout import held_out
from orchestrator.store import SqlStore
from orchestrator.templates import TemplateSet
from orchestrator.whatif import draft_vs_running, replayed_types, what_if
from tests.builders import at, flow_data, make_event, make_flow, make_patient
from tests.conftest import EVERY_BACKEND

RUNNING = make_flow()
PATIENTS = 12


def drafted(edit: Any) -> Flow:
    """The test flow as version 2, with `edit` applied to its flow-file data."""
    data = flow_data(version=2)
    edit(data)
    return FlowFile.model_validate(data).to_core()


def messages(data: dict[str, Any], stage: str = "booked") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = next(s for s in data["stages"] if s["id"] == stage)["messages"]
    return found


def bookings(patients: int = PATIENTS, first: int = 0) -> list[Event]:
    """One booking per patient, a day apart, each appointment eight days on."""
    return [
        make_event(
            "appointment.booked",
            occurred_at=at(days=i),
            start=at(days=i + 8),
            appointment_id=f"a-{i}",
            patient=make_patient(f"p-{i:02}"),
        )
        for i in range(first, first + patients)
    ]


def run(templates: TemplateSet, draft: Flow, history: Sequence[Event] | None = None) -> Comparison:
    return what_if(
        history if history is not None else bookings(),
        {RUNNING.id: RUNNING},
        {draft.id: draft},
        templates,
        until=at(days=60),
    )


def kinds(comparison: Comparison) -> set[str]:
    return {c.kind for c in comparison.changes}


def test_the_running_flows_against_themselves_change_nothing(flow_templates: TemplateSet) -> None:
    comparison = run(flow_templates, RUNNING)

    assert comparison.changes == ()
    assert comparison.by_stage() == {}
    assert comparison.unchanged >= PATIENTS * 4


def test_a_reminder_moved_from_72h_to_48h_is_moved_for_every_patient(
    flow_templates: TemplateSet,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        reminder = next(m for m in messages(data) if m["id"] == "reminder_72h")
        reminder["at"] = "appointment.start - 48h"

    comparison = run(flow_templates, drafted(edit))

    assert kinds(comparison) == {"moved"}
    moved = comparison.changes
    assert {c.instance.message for c in moved} == {"reminder_72h"}
    assert len({c.instance.patient_id for c in moved}) == PATIENTS
    for change in moved:
        assert change.before is not None and change.after is not None
        assert change.after.due_at - change.before.due_at == timedelta(hours=24)
    assert comparison.by_stage()[("test-flow", "booked")]["moved"] == len(moved)
    assert comparison.summary["moved"] == len(moved)


def test_a_removed_message_is_removed_and_an_added_one_added(
    flow_templates: TemplateSet,
) -> None:
    def remove(data: dict[str, Any]) -> None:
        stage = next(s for s in data["stages"] if s["id"] == "booked")
        stage["messages"] = [m for m in stage["messages"] if m["id"] != "intake_nudge"]

    def add(data: dict[str, Any]) -> None:
        messages(data).append(
            {
                "id": "reminder_2h",
                "template": "reminder",
                "channels": ["sms"],
                "at": "appointment.start - 2h",
            }
        )

    removed = run(flow_templates, drafted(remove))
    added = run(flow_templates, drafted(add))

    assert kinds(removed) == {"removed"}
    assert {c.instance.message for c in removed.changes} == {"intake_nudge"}
    assert len(removed.changes) == PATIENTS
    assert removed.by_stage() == {
        ("test-flow", "booked"): {
            "added": 0,
            "removed": PATIENTS,
            "moved": 0,
            "suppressed": 0,
            "changed": 0,
        }
    }
    assert kinds(added) == {"added"}
    assert {c.instance.message for c in added.changes} == {"reminder_2h"}
    assert len(added.changes) == PATIENTS
    assert all(c.before is None for c in added.changes)


def test_a_holdout_shows_the_held_out_patients_as_suppressed(flow_templates: TemplateSet) -> None:
    def holdout(data: dict[str, Any]) -> None:
        next(m for m in messages(data) if m["id"] == "reminder_24h")["holdout"] = 50

    comparison = run(flow_templates, drafted(holdout), bookings(40))

    expected = {
        f"p-{i:02}" for i in range(40) if held_out(f"p-{i:02}", "test-flow", "reminder_24h", 50)
    }
    assert 0 < len(expected) < 40
    assert kinds(comparison) == {"suppressed"}
    assert {c.instance.patient_id for c in comparison.changes} == expected
    for change in comparison.changes:
        assert change.after is not None and change.after.outcome == "suppressed:holdout"
        assert change.before is not None and change.before.status == "sent"
    stage = comparison.by_stage()[("test-flow", "booked")]
    assert stage["suppressed"] == len(expected)


def test_the_clock_stops_at_until_and_what_is_due_later_still_shows(
    flow_templates: TemplateSet,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        next(m for m in messages(data) if m["id"] == "reminder_72h")["at"] = (
            "appointment.start - 48h"
        )

    comparison = what_if(
        bookings(1),
        {RUNNING.id: RUNNING},
        {RUNNING.id: drafted(edit)},
        flow_templates,
        until=at(days=1),
    )

    (moved,) = comparison.changes
    assert moved.before is not None and moved.after is not None
    assert (moved.before.status, moved.after.status) == ("scheduled", "scheduled")


def test_replayed_types_are_what_the_flows_read_and_consent() -> None:
    types = replayed_types({RUNNING.id: RUNNING})

    assert types >= RUNNING.event_types
    assert EventType.CONSENT_OPTED_OUT in types
    assert EventType.MESSAGE_DELIVERED not in types


# -- over a store's history --------------------------------------------------------


@pytest.mark.backends(*EVERY_BACKEND)
def test_draft_vs_running_replays_the_last_days_of_the_store(
    store: SqlStore | MemoryStore, flow_templates: TemplateSet
) -> None:
    old, recent = bookings(3), bookings(4, first=30)
    with store.unit(at(days=40)) as unit:
        for event in [*old, *recent]:
            unit.mark_processed(event)

    def edit(data: dict[str, Any]) -> None:
        stage = next(s for s in data["stages"] if s["id"] == "booked")
        stage["messages"] = [m for m in stage["messages"] if m["id"] != "intake_nudge"]

    comparison = draft_vs_running(
        store,
        {RUNNING.id: RUNNING},
        {RUNNING.id: drafted(edit)},
        flow_templates,
        days=12,
        clock=VirtualClock(at(days=40)),
    )

    removed = {c.instance.patient_id for c in comparison.changes}
    assert kinds(comparison) == {"removed"}
    assert removed == {e.patient.id for e in recent}  # the older bookings are out of the window
    document = json.loads(json.dumps(comparison.as_json()))
    assert document["summary"]["removed"] == 4
    assert document["stages"] == [
        {
            "flow": "test-flow",
            "stage": "booked",
            "added": 0,
            "removed": 4,
            "moved": 0,
            "suppressed": 0,
            "changed": 0,
        }
    ]
    assert len(document["changes"]) == 4


def test_draft_vs_running_keeps_the_flows_the_draft_does_not_change(
    flow_templates: TemplateSet,
) -> None:
    store = MemoryStore()
    with store.unit(at(days=40)) as unit:
        for event in bookings(3, first=30):
            unit.mark_processed(event)
    other = make_flow(id="other-flow")

    comparison = draft_vs_running(
        store,
        {RUNNING.id: RUNNING, other.id: other},
        {RUNNING.id: RUNNING},
        flow_templates,
        days=12,
        clock=VirtualClock(at(days=40)),
    )

    assert comparison.changes == ()
    assert comparison.unchanged > 0


def test_on_played_hears_each_event_once_after_both_plays_and_none_past_until(
    flow_templates: TemplateSet,
) -> None:
    history = bookings(5)
    heard: list[str] = []
    comparison = what_if(
        history,
        {RUNNING.id: RUNNING},
        {RUNNING.id: RUNNING},
        flow_templates,
        until=at(days=2, hours=12),
        on_played=lambda event: heard.append(event.id),
    )

    assert heard == [e.id for e in history[:3]]
    assert comparison.changes == ()
