"""The simulator: engine decisions and send-time policies on a virtual clock."""

from __future__ import annotations

import functools
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.decisions import DecisionRecord
from orchestrator.event import Event
from orchestrator.flows.model import Flow
from orchestrator.simulate import PlayOrder, in_history_order, out_of_order, simulate
from orchestrator.templates import TemplateSet
from tests.builders import at, make_event, make_flow, make_patient

FLOW = make_flow()
START = at(days=8)


def run(
    templates: TemplateSet, events: list, flow: Flow = FLOW, **kwargs: object
) -> list[DecisionRecord]:
    return list(simulate(events, {flow.id: flow}, templates, **kwargs))  # type: ignore[arg-type]


def outcome(
    records: list[DecisionRecord], message: str, recipient: str = "patient"
) -> DecisionRecord:
    final = [
        r
        for r in records
        if r.message == message and r.recipient == recipient and r.status != "scheduled"
    ]
    assert final, f"no final decision for {message}"
    return final[-1]


def test_every_scheduled_message_reaches_a_final_decision(flow_templates: TemplateSet) -> None:
    records = run(flow_templates, [make_event("appointment.booked", occurred_at=at(), start=START)])
    keys = {r.key for r in records if r.status == "scheduled"}
    final = {r.key for r in records if r.status in ("sent", "cancelled", "suppressed", "expired")}
    assert keys == final


def test_message_due_at_night_is_deferred_to_the_end_of_quiet_hours_local_time(
    flow_templates: TemplateSet,
) -> None:
    # Booked at 22:30 in Chicago (CST, UTC-6): the confirmation waits until 08:00.
    booked_at = at(hours=14, minutes=30)  # 2026-03-03 04:30 UTC
    records = run(
        flow_templates, [make_event("appointment.booked", occurred_at=booked_at, start=START)]
    )
    deferred = [
        r for r in records if r.message == "confirmation" and r.reason == "deferred:quiet_hours"
    ]
    assert [r.due_at for r in deferred] == [at(days=1)]  # 2026-03-03 14:00 UTC = 08:00 CST
    sent = outcome(records, "confirmation")
    assert (sent.status, sent.at, sent.channel, sent.language) == ("sent", at(days=1), "sms", "en")


def test_sms_after_opt_out_falls_back_to_email_and_without_email_is_suppressed(
    flow_templates: TemplateSet,
) -> None:
    opted_out = make_event(
        "consent.opted_out",
        occurred_at=at(hours=1),
        appointment_id=None,
        attributes={"channel": "sms"},
    )
    records = run(
        flow_templates, [make_event("appointment.booked", occurred_at=at(), start=START), opted_out]
    )
    assert outcome(records, "reminder_72h").channel == "email"
    # The intake nudge is SMS only: nothing left to send it by.
    nudge = outcome(records, "intake_nudge")
    assert (nudge.status, nudge.reason) == ("suppressed", "consent")


def test_opt_out_of_everything_ends_the_journey(flow_templates: TemplateSet) -> None:
    opted_out = make_event("consent.opted_out", occurred_at=at(hours=1), appointment_id=None)
    records = run(
        flow_templates, [make_event("appointment.booked", occurred_at=at(), start=START), opted_out]
    )
    assert {r.reason for r in records if r.status == "cancelled"} == {"journey_exited:opted_out"}
    assert [r.message for r in records if r.status == "sent"] == ["confirmation"]


def test_frequency_cap_suppresses_what_exceeds_it_but_not_essential_messages(
    flow_templates: TemplateSet,
) -> None:
    capped = make_flow(frequency_caps={"sms": {"limit": 1, "per": "7d"}})
    patient = make_patient(email=None)
    records = run(
        flow_templates,
        [make_event("appointment.booked", occurred_at=at(), start=START, patient=patient)],
        capped,
    )
    assert outcome(records, "confirmation").status == "sent"
    nudge = outcome(records, "intake_nudge")
    assert (nudge.status, nudge.reason) == ("suppressed", "frequency_cap")


def test_caregiver_copy_goes_to_the_caregiver_in_their_language(
    flow_templates: TemplateSet,
) -> None:
    patient = make_patient(
        caregivers=[
            {"id": "c-1", "phone": "+15555550102", "language": "es", "receives": ["transport"]}
        ]
    )
    records = run(
        flow_templates,
        [make_event("appointment.booked", occurred_at=at(), start=START, patient=patient)],
    )
    copy = outcome(records, "reminder_24h", "caregiver:c-1")
    assert (copy.status, copy.channel, copy.language) == ("sent", "sms", "es")


def test_patient_language_missing_from_the_flow_falls_back_with_a_note(
    flow_templates: TemplateSet,
) -> None:
    patient = make_patient(language="fr")
    records = run(
        flow_templates,
        [make_event("appointment.booked", occurred_at=at(), start=START, patient=patient)],
    )
    sent = outcome(records, "confirmation")
    assert (sent.language, sent.reason) == ("en", "language_fallback")


def test_until_stops_the_clock_and_leaves_later_messages_scheduled(
    flow_templates: TemplateSet,
) -> None:
    records = run(
        flow_templates,
        [make_event("appointment.booked", occurred_at=at(), start=START)],
        until=at(days=2),
    )
    assert {r.message for r in records if r.status == "sent"} == {"confirmation", "intake_nudge"}
    assert all(r.at <= at(days=2) for r in records)


def test_reschedule_between_sends_moves_the_reminders_the_patient_gets(
    flow_templates: TemplateSet,
) -> None:
    later = START + timedelta(days=3)
    records = run(
        flow_templates,
        [
            make_event("appointment.booked", occurred_at=at(), start=START),
            make_event("appointment.rescheduled", occurred_at=at(days=2), start=later),
        ],
    )
    sent = {r.message: r.at for r in records if r.status == "sent"}
    assert sent["reminder_24h"] == later - timedelta(hours=24)
    assert sent["reminder_72h"] == later - timedelta(hours=72)


def test_a_cancellation_at_the_instant_a_message_is_due_wins(flow_templates: TemplateSet) -> None:
    due = START - timedelta(hours=24)
    records = run(
        flow_templates,
        [
            make_event("appointment.booked", occurred_at=at(), start=START),
            make_event("appointment.cancelled", occurred_at=due),
        ],
    )
    reminder = outcome(records, "reminder_24h")
    assert (reminder.status, reminder.reason) == ("cancelled", "appointment_cancelled")


def test_a_reschedule_naming_the_patient_by_id_alone_keeps_their_language_and_contacts(
    flow_templates: TemplateSet,
) -> None:
    later = START + timedelta(days=1)
    caregiver = {"id": "c-1", "phone": "+15555550102", "receives": ["transport"]}
    records = run(
        flow_templates,
        [
            make_event(
                "appointment.booked",
                occurred_at=at(),
                start=START,
                patient=make_patient(language="es", caregivers=[caregiver]),
            ),
            make_event(
                "appointment.rescheduled",
                occurred_at=at(hours=1),
                start=later,
                patient={"id": "p-1"},
            ),
        ],
    )
    reminder = outcome(records, "reminder_72h")
    assert (reminder.status, reminder.language) == ("sent", "es")
    assert [r.reason for r in records if r.status == "suppressed"] == []
    assert outcome(records, "reminder_24h", "caregiver:c-1").status == "sent"


def test_an_older_event_fed_later_fills_gaps_but_not_the_newer_language(
    flow_templates: TemplateSet,
) -> None:
    records = run(
        flow_templates,
        [
            make_event(
                "appointment.booked",
                occurred_at=at(hours=2),
                start=START,
                patient={"id": "p-1", "language": "es"},
            ),
            make_event("intake.sent", occurred_at=at(hours=1), start=START, patient=make_patient()),
        ],
    )
    reminder = outcome(records, "reminder_72h")
    assert (reminder.status, reminder.language) == ("sent", "es")


def late_booking() -> list:
    """Another patient's event ten days on, then a booking that happened ten days before it.

    Played in arrival order, the booking arrives ten days late.
    """
    return [
        make_event(
            "appointment.booked",
            id="evt-other",
            occurred_at=at(days=10),
            patient=make_patient("p-2"),
            appointment_id="a-2",
            start=at(days=20),
        ),
        make_event("appointment.booked", id="evt-late", occurred_at=at(), start=at(days=30)),
    ]


def test_a_message_known_only_days_after_it_was_due_is_expired_as_stale(
    flow_templates: TemplateSet,
) -> None:
    records = [
        r
        for r in run(flow_templates, late_booking(), order=PlayOrder.ARRIVAL)
        if r.patient_id == "p-1"
    ]

    nudge = outcome(records, "intake_nudge")  # due a day after the booking, nine days ago
    assert (nudge.status, nudge.reason) == ("expired", "stale")
    # The confirmation expires only when the visit starts: the flow's own limit wins.
    assert outcome(records, "confirmation").status == "sent"


def test_simulate_takes_the_default_staleness_limit_it_is_given(
    flow_templates: TemplateSet,
) -> None:
    records = [
        r
        for r in run(
            flow_templates, late_booking(), order=PlayOrder.ARRIVAL, stale_after=timedelta(days=7)
        )
        if r.patient_id == "p-1"
    ]
    assert (outcome(records, "intake_nudge").status, outcome(records, "intake_nudge").reason) == (
        "expired",
        "stale",
    )
    records = [
        r
        for r in run(
            flow_templates, late_booking(), order=PlayOrder.ARRIVAL, stale_after=timedelta(days=10)
        )
        if r.patient_id == "p-1"
    ]
    assert outcome(records, "intake_nudge").status == "sent"


def history() -> list[Event]:
    """Two patients: a booking moved, a cancellation, an opt-out; each at its own instant."""
    other = make_patient("p-2", phone="+15555550103", email="p2@example.org")
    return [
        make_event("appointment.booked", id="e-1", occurred_at=at(), start=START),
        make_event(
            "appointment.booked",
            id="e-2",
            occurred_at=at(hours=3),
            start=START + timedelta(days=1),
            patient=other,
            appointment_id="a-2",
        ),
        make_event(
            "appointment.rescheduled",
            id="e-3",
            occurred_at=at(days=2),
            start=START + timedelta(days=2),
        ),
        make_event(
            "consent.opted_out",
            id="e-4",
            occurred_at=at(days=3),
            patient=other,
            appointment_id=None,
            attributes={"channel": "sms"},
        ),
        make_event(
            "appointment.cancelled",
            id="e-5",
            occurred_at=at(days=5),
            patient=other,
            appointment_id="a-2",
        ),
    ]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_shuffle_or_duplication_of_a_file_gives_the_same_decisions(
    flow_templates: TemplateSet, data: st.DataObject
) -> None:
    events = history()
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=3))
    noisy = list(shuffled)
    for event in repeats:
        noisy.insert(data.draw(st.integers(0, len(noisy))), event)

    assert run(flow_templates, noisy) == played_in_order(flow_templates)


@functools.cache
def played_in_order(templates: TemplateSet) -> list[DecisionRecord]:
    return run(templates, history())


def test_events_at_the_same_instant_play_in_the_engines_order_whatever_the_file_says() -> None:
    first = make_event("appointment.booked", id="e-1", occurred_at=at())
    second = make_event("appointment.cancelled", id="e-2", occurred_at=at())
    earlier = make_event("intake.sent", id="e-0", occurred_at=at(hours=-1))

    assert in_history_order([first, second, earlier]) == [earlier, first, second]
    assert in_history_order([second, first]) == in_history_order([first, second])


def test_a_booking_and_its_cancellation_at_one_instant_decide_the_same_in_either_order(
    flow_templates: TemplateSet,
) -> None:
    booked = make_event("appointment.booked", id="e-1", occurred_at=at(), start=at(days=8))
    cancelled = make_event("appointment.cancelled", id="e-2", occurred_at=at(), start=at(days=8))

    assert run(flow_templates, [cancelled, booked]) == run(flow_templates, [booked, cancelled])


def test_out_of_order_counts_the_events_earlier_than_one_before_them() -> None:
    times = [at(days=2), at(), at(days=1), at(days=3), at(days=3), at(days=2)]
    events = [make_event("intake.sent", id=f"e-{i}", occurred_at=t) for i, t in enumerate(times)]

    assert out_of_order(events) == 3
    assert out_of_order(in_history_order(events)) == 0


def test_on_played_hears_each_played_event_once_in_order_and_none_past_until(
    flow_templates: TemplateSet,
) -> None:
    events = [
        make_event("appointment.booked", occurred_at=at(days=day), start=START, id=f"e-{day}")
        for day in (2, 0, 1, 5)
    ]
    heard: list[str] = []
    records = run(flow_templates, events, until=at(days=3), on_played=lambda e: heard.append(e.id))

    assert heard == ["e-0", "e-1", "e-2"]
    # The hook sees the play; it changes nothing in it.
    assert records == run(flow_templates, events, until=at(days=3))
