"""The journey engine: what each event does to a journey and which actions it returns."""

from __future__ import annotations

from datetime import timedelta
from hashlib import blake2b
from typing import Any

from orchestrator.actions import (
    CancelMessage,
    Decision,
    EndEpisode,
    EnterStage,
    ExpireMessage,
    ScheduleMessage,
)
from orchestrator.engine import advance, route
from orchestrator.event import Event
from orchestrator.event_schema import parse_event
from orchestrator.flows import load_flows
from orchestrator.flows.model import Flow
from orchestrator.journey import EpisodeStatus, Journey, ScheduledMessage
from tests.builders import at, flow_data, make_event, make_event_data, make_flow, make_patient
from tests.samples import ROOT as SAMPLES_ROOT
from tests.samples import SAMPLE_FILES, sample_events

FLOW = make_flow()
START = at(days=8)  # Tuesday 2026-03-10 14:00 UTC, 09:00 in Chicago (CDT)


def run(events: list[Event], flow: Flow = FLOW, journey: Journey | None = None) -> list[Decision]:
    decisions = []
    journey = journey or Journey.start("p-1", flow.id)
    for event in events:
        decision = advance(journey, event, flow, event.occurred_at)
        decisions.append(decision)
        journey = decision.journey
    return decisions


def scheduled(decision: Decision) -> dict[str, ScheduleMessage]:
    return {a.message.message_id: a for a in decision.actions if isinstance(a, ScheduleMessage)}


def cancelled(decision: Decision) -> dict[str, str]:
    return {
        a.message.message_id: a.reason for a in decision.actions if isinstance(a, CancelMessage)
    }


def pending(decision: Decision) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in decision.journey.messages.values():
        found.setdefault(message.message_id, []).append(message.due_at.isoformat())
    return found


def booked(**kwargs: Any) -> Event:
    kwargs.setdefault("start", START)
    return make_event("appointment.booked", **kwargs)


def test_booking_enters_the_stage_and_schedules_its_messages_at_their_times() -> None:
    [decision] = run([booked(occurred_at=at())])
    enters = [a for a in decision.actions if isinstance(a, EnterStage)]
    assert [(e.stage_id, e.at) for e in enters] == [("booked", at())]
    times = {m: a.message.due_at for m, a in scheduled(decision).items()}
    assert times == {
        "confirmation": at(),
        "intake_nudge": at(days=1),
        "reminder_72h": START - timedelta(hours=72),
        "reminder_24h": START - timedelta(hours=24),
    }
    assert scheduled(decision)["confirmation"].message.expires_at == START
    assert scheduled(decision)["reminder_72h"].message.expires_at == START


def test_same_event_id_twice_changes_nothing() -> None:
    event = booked(occurred_at=at())
    first, second = run([event, event])
    assert second.actions == ()
    assert second.journey == first.journey


def test_event_of_a_type_the_flow_ignores_changes_nothing() -> None:
    [first] = run([booked(occurred_at=at())])
    decision = advance(
        first.journey, make_event("message.delivered", appointment_id=None), FLOW, at(1)
    )
    assert decision.actions == ()
    assert decision.journey is first.journey


def test_booking_for_another_service_starts_nothing() -> None:
    [decision] = run([booked(occurred_at=at(), service="dermatology.consult")])
    assert decision.actions == ()
    assert decision.journey.episodes == ()


def test_reschedule_moves_pending_reminders_and_keeps_the_confirmation() -> None:
    later = START + timedelta(days=2)
    first, second = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.rescheduled", occurred_at=at(days=1, hours=-1), start=later),
        ]
    )
    assert cancelled(second) == {"reminder_72h": "rescheduled", "reminder_24h": "rescheduled"}
    moved = scheduled(second)
    assert moved["reminder_72h"].message.due_at == later - timedelta(hours=72)
    assert moved["reminder_24h"].message.due_at == later - timedelta(hours=24)
    # The confirmation keeps its key (it may have been sent); only its expiry follows the visit.
    confirmation = moved["confirmation"].message
    assert confirmation.key == scheduled(first)["confirmation"].message.key
    assert confirmation.expires_at == later
    assert "intake_nudge" not in moved and "intake_nudge" not in cancelled(second)


def test_cancellation_cancels_what_waits_for_the_visit_and_starts_rebooking() -> None:
    _, decision = run(
        [booked(occurred_at=at()), make_event("appointment.cancelled", occurred_at=at(days=2))]
    )
    assert cancelled(decision) == {
        "confirmation": "appointment_cancelled",
        "intake_nudge": "appointment_cancelled",
        "reminder_72h": "appointment_cancelled",
        "reminder_24h": "appointment_cancelled",
    }
    assert [a.stage_id for a in decision.actions if isinstance(a, EnterStage)] == ["rebooking"]
    assert pending(decision) == {"rebooking_nudge": [at(days=3, hours=2).isoformat()]}


def test_rebooking_a_new_appointment_returns_to_booked_and_cancels_the_nudge() -> None:
    new_start = START + timedelta(days=7)
    *_, decision = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.cancelled", occurred_at=at(days=2)),
            make_event(
                "appointment.booked",
                occurred_at=at(days=2, hours=3),
                appointment_id="a-2",
                start=new_start,
            ),
        ]
    )
    assert cancelled(decision) == {"rebooking_nudge": "cancel_on:appointment.booked"}
    assert [a.stage_id for a in decision.actions if isinstance(a, EnterStage)] == ["booked"]
    assert scheduled(decision)["reminder_24h"].message.due_at == new_start - timedelta(hours=24)
    assert len(decision.journey.episodes) == 1


def test_an_older_booking_arriving_after_the_cancellation_does_not_undo_it() -> None:
    cancel = make_event("appointment.cancelled", occurred_at=at(days=2))
    first, second = run([cancel, booked(occurred_at=at())])
    assert first.actions == ()  # a cancellation of an unknown appointment starts nothing
    reminders = {"reminder_72h", "reminder_24h", "confirmation", "intake_nudge"}
    assert reminders.isdisjoint(pending(second))
    assert set(pending(second)) == {"rebooking_nudge"}


def test_an_older_reschedule_arriving_late_does_not_move_reminders_back() -> None:
    newest = START + timedelta(days=3)
    older = START + timedelta(days=1)
    *_, decision = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.rescheduled", occurred_at=at(days=2), start=newest),
            make_event("appointment.rescheduled", occurred_at=at(days=1), start=older),
        ]
    )
    assert decision.actions == ()
    assert pending(decision)["reminder_24h"] == [(newest - timedelta(hours=24)).isoformat()]


def test_completed_intake_cancels_the_pending_nudge() -> None:
    _, decision = run(
        [booked(occurred_at=at()), make_event("intake.completed", occurred_at=at(hours=5))]
    )
    assert cancelled(decision) == {"intake_nudge": "unless:intake.completed"}


def test_intake_completed_before_the_stage_is_entered_prevents_the_nudge() -> None:
    *_, decision = run(
        [
            booked(occurred_at=at()),
            make_event("intake.completed", occurred_at=at(hours=5)),
            make_event("appointment.cancelled", occurred_at=at(hours=6)),
            booked(occurred_at=at(hours=7), appointment_id="a-2", start=START + timedelta(days=1)),
        ]
    )
    assert "intake_nudge" not in scheduled(decision)
    assert "reminder_24h" in scheduled(decision)


def test_check_in_cancels_the_reminders_that_wait_for_the_visit() -> None:
    _, decision = run(
        [
            booked(occurred_at=at(), start=at(days=2)),
            make_event("appointment.checked_in", occurred_at=at(days=1, hours=23)),
        ]
    )
    # The 72h reminder was already due when booked; cancelling it is a no-op for whoever sent it.
    assert cancelled(decision) == {
        "reminder_72h": "appointment_checked_in",
        "reminder_24h": "appointment_checked_in",
        "confirmation": "appointment_checked_in",
    }


def test_completion_enters_the_final_stage_and_ends_the_episode() -> None:
    *_, decision = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.completed", occurred_at=START + timedelta(hours=1)),
        ]
    )
    [end] = [a for a in decision.actions if isinstance(a, EndEpisode)]
    assert end.outcome == "completed"
    [episode] = decision.journey.episodes
    assert episode.status is EpisodeStatus.COMPLETED
    # "+ 1d at 10:00" is 10:00 the next day in the patient's zone (CDT, UTC-5).
    assert pending(decision)["survey"] == [(START + timedelta(days=1, hours=1)).isoformat()]


def test_opt_out_exits_every_active_episode_and_cancels_their_messages() -> None:
    *_, decision = run(
        [
            booked(occurred_at=at()),
            booked(occurred_at=at(hours=1), appointment_id="a-2", start=START + timedelta(days=5)),
            make_event("consent.opted_out", occurred_at=at(hours=2), appointment_id=None),
        ]
    )
    ends = [a for a in decision.actions if isinstance(a, EndEpisode)]
    assert sorted(e.outcome for e in ends) == ["opted_out", "opted_out"]
    assert decision.journey.messages == {}
    assert set(cancelled(decision).values()) == {"journey_exited:opted_out"}


def test_two_appointments_are_two_episodes_with_their_own_messages() -> None:
    *_, decision = run(
        [
            booked(occurred_at=at()),
            booked(occurred_at=at(hours=1), appointment_id="a-2", start=START + timedelta(days=5)),
            make_event("appointment.cancelled", occurred_at=at(hours=2), appointment_id="a-2"),
        ]
    )
    assert len(decision.journey.episodes) == 2
    by_appointment = {
        m.appointment_id for m in decision.journey.messages.values() if m.stage_id == "booked"
    }
    assert by_appointment == {"a-1"}


def test_caregiver_receiving_the_topic_gets_a_copy() -> None:
    patient = make_patient(
        caregivers=[
            {"id": "c-1", "phone": "+15555550102", "receives": ["transport"]},
            {"id": "c-2", "phone": "+15555550103", "receives": ["forms"]},
        ]
    )
    [decision] = run([booked(occurred_at=at(), patient=patient)])
    recipients = sorted(
        str(m.recipient)
        for m in decision.journey.messages.values()
        if m.message_id == "reminder_24h"
    )
    assert recipients == ["caregiver:c-1", "patient"]


def test_message_already_pointless_when_decided_is_expired_not_scheduled() -> None:
    late = booked(occurred_at=at(), start=at(hours=1))
    decision = advance(Journey.start("p-1", FLOW.id), late, FLOW, at(hours=2))
    expired = {
        a.message.message_id: a.reason for a in decision.actions if isinstance(a, ExpireMessage)
    }
    assert expired == {
        "confirmation": "expired_before_scheduling",
        "reminder_72h": "expired_before_scheduling",
        "reminder_24h": "expired_before_scheduling",
    }


def test_keys_are_the_same_for_the_same_decision_made_twice() -> None:
    event = booked(occurred_at=at())
    [a] = run([event])
    [b] = run([event])
    assert set(a.journey.messages) == set(b.journey.messages)
    assert len(set(a.journey.messages)) == 4


def test_flow_version_is_part_of_the_key() -> None:
    event = booked(occurred_at=at())
    [v1] = run([event])
    [v2] = run([event], flow=make_flow(version=2))
    assert set(v1.journey.messages).isdisjoint(v2.journey.messages)
    assert {m.flow_version for m in v2.journey.messages.values()} == {2}


def test_route_picks_the_flows_that_listen_to_the_event_type() -> None:
    other = make_flow(
        id="other",
        starts_on=["referral.received"],
        stages=[
            {
                "id": "referred",
                "name": "Referred",
                "category": "awareness",
                "enter_on": ["referral.received"],
            }
        ],
    )
    assert [
        f.id for f in route(make_event("referral.received", appointment_id=None), [FLOW, other])
    ] == ["other"]
    assert [f.id for f in route(booked(), [FLOW, other])] == ["test-flow", "other"]


def test_reminder_whose_moment_passed_before_booking_is_expired_not_sent_late() -> None:
    soon = at(days=2)
    decision = advance(
        Journey.start("p-1", FLOW.id), booked(occurred_at=at(), start=soon), FLOW, at()
    )
    expired = {
        a.message.message_id: a.reason for a in decision.actions if isinstance(a, ExpireMessage)
    }
    assert expired == {"reminder_72h": "moment_passed"}
    assert scheduled(decision)["reminder_24h"].message.due_at == soon - timedelta(hours=24)
    assert "confirmation" in scheduled(decision)  # due now: a confirmation is never "late"


def test_cancelling_an_appointment_of_another_care_path_moves_nothing() -> None:
    _, decision = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.cancelled", occurred_at=at(hours=1), appointment_id="dental-7"),
        ]
    )
    assert decision.actions == ()
    assert [e.stage_id for e in decision.journey.episodes] == ["booked"]


def test_cancellation_without_a_service_matches_triggers_narrowed_to_the_service() -> None:
    narrowed = make_flow(
        stages=[
            *flow_data()["stages"][:2],
            {
                "id": "rebooking",
                "name": "Rebooking",
                "category": "access",
                "enter_on": [
                    {
                        "event": "appointment.cancelled",
                        "service": "cardiology.*",
                        "from": ["booked"],
                    }
                ],
            },
        ]
    )
    cancel = make_event_data("appointment.cancelled", occurred_at=at(hours=1))
    cancel["appointment"]["service"] = None
    _, decision = run([booked(occurred_at=at()), parse_event(cancel)], flow=narrowed)
    assert [a.stage_id for a in decision.actions if isinstance(a, EnterStage)] == ["rebooking"]


def test_opt_out_after_completion_cancels_the_pending_follow_ups() -> None:
    *_, decision = run(
        [
            booked(occurred_at=at()),
            make_event("appointment.completed", occurred_at=START + timedelta(hours=1)),
            make_event(
                "consent.opted_out", occurred_at=START + timedelta(hours=2), appointment_id=None
            ),
        ]
    )
    # The nudge was due long before; cancelling it is a no-op for whoever sent it.
    assert cancelled(decision) == {
        "survey": "journey_exited:opted_out",
        "intake_nudge": "journey_exited:opted_out",
    }
    assert decision.journey.episodes[0].status is EpisodeStatus.EXITED


def test_a_late_event_that_changes_the_stages_reports_the_stage_it_enters() -> None:
    # Booked, then visited; a cancellation in between arrives last: the
    # re-fold takes the episode to rebooking instead, and says so.
    first = booked(occurred_at=at())
    visit = make_event("appointment.completed", occurred_at=at(hours=3))
    late = make_event("appointment.cancelled", occurred_at=at(hours=2))
    *_, decision = run([first, visit, late])
    [episode] = decision.journey.episodes
    assert [v.stage_id for v in episode.history] == ["booked", "rebooking"]
    enters = [a for a in decision.actions if isinstance(a, EnterStage)]
    assert [(e.stage_id, e.event_id) for e in enters] == [("rebooking", late.id)]


def test_every_key_is_the_documented_hash_of_its_message() -> None:
    # docs/architecture.md: 24 hex of BLAKE2b over flow id, version, patient id,
    # caregiver id, message id, creating event id and due time in whole seconds,
    # joined by \x1f. The fold builds that material in pieces; the samples hold
    # messages to patients and to caregivers, and rescheduled ones.
    flows = list(load_flows([SAMPLES_ROOT / "flows"]).flows.values())
    events = [parse_event(e) for path in SAMPLE_FILES for e in sample_events(path.stem)]
    seen: list[ScheduledMessage] = []
    for stream in (events, events[::-1]):  # in order, and backwards (every event re-folds)
        journeys: dict[tuple[str, str], Journey] = {}
        for event in stream:
            for flow in route(event, flows):
                key = (event.patient.id, flow.id)
                journey = journeys.get(key) or Journey.start(event.patient.id, flow.id)
                decision = advance(journey, event, flow, event.occurred_at)
                journeys[key] = decision.journey
                seen += [a.message for a in decision.actions if isinstance(a, ScheduleMessage)]
    for message in seen:
        r = message.recipient
        material = "\x1f".join(
            [
                message.flow_id,
                str(message.flow_version),
                r.patient_id,
                r.caregiver_id or "",
                message.message_id,
                message.created_by,
                str(int(message.due_at.timestamp())),
            ]
        )
        assert message.key == blake2b(material.encode(), digest_size=12).hexdigest()
    assert any(m.recipient.caregiver_id for m in seen)
    assert len({m.key for m in seen}) > 100
