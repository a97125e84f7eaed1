"""Invariants of the engine and the simulator, whatever the stream (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.actions import CancelMessage, ExpireMessage, ScheduleMessage
from orchestrator.engine import advance
from orchestrator.event import Event
from orchestrator.flows.schema import FlowFile
from orchestrator.journey import Journey
from orchestrator.simulate import simulate
from orchestrator.templates import TemplateSet
from tests.builders import flow_data, make_event, make_patient


def _flow_with_a_persona_variant() -> FlowFile:
    """The test flow, where patients in New York get the 72-hour reminder on another
    timing and channel: streams drawn in that zone take the variant's path."""
    data = flow_data()
    data["personas"] = [
        {"id": "east", "name": "East coast", "when": {"patient.timezone": "America/New_York"}}
    ]
    reminder = next(m for m in data["stages"][0]["messages"] if m["id"] == "reminder_72h")
    reminder["variants"] = [
        {"persona": "east", "at": "appointment.start - 2d at 09:00", "channels": ["email"]}
    ]
    return FlowFile.model_validate(data)


FLOW = _flow_with_a_persona_variant().to_core()
FLOWS = {FLOW.id: FLOW}
ZONES = [
    "America/Chicago",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Madrid",
    "Australia/Sydney",
]
# Weeks around both US daylight-saving changes of 2026, and a quiet one.
BASES = [
    datetime(2026, 3, 5, tzinfo=UTC),
    datetime(2026, 10, 29, tzinfo=UTC),
    datetime(2026, 6, 10, tzinfo=UTC),
]
KINDS = [
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.checked_in",
    "appointment.completed",
    "intake.completed",
    "consent.opted_out",
]


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """A plausible, time-ordered stream for one patient: bookings first, then anything."""
    base = draw(st.sampled_from(BASES))
    zone = draw(st.sampled_from(ZONES))
    patient = make_patient(timezone=zone)
    minutes = st.integers(min_value=0, max_value=14 * 24 * 60)
    events: list[Event] = []
    for n, appointment in enumerate(
        draw(st.lists(st.sampled_from(["a-1", "a-2"]), min_size=1, max_size=2, unique=True))
    ):
        events.append(
            make_event(
                "appointment.booked",
                id=f"book-{n}",
                occurred_at=base + timedelta(minutes=draw(minutes) // 7),
                appointment_id=appointment,
                start=base + timedelta(days=3, minutes=draw(minutes)),
                patient=patient,
            )
        )
    for n in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(KINDS))
        appointment = draw(st.sampled_from(["a-1", "a-2"]))
        start = (
            base + timedelta(days=3, minutes=draw(minutes))
            if kind.endswith(("booked", "rescheduled"))
            else None
        )
        events.append(
            make_event(
                kind,
                id=f"evt-{n}",
                occurred_at=base + timedelta(days=2, minutes=draw(minutes) // 3),
                appointment_id=None if kind == "consent.opted_out" else appointment,
                start=start,
                patient=patient,
            )
        )
    return sorted(events, key=Event.sort_key)


def fold(events: list[Event], now: datetime) -> tuple[Journey, set[str]]:
    """Advance through `events`; return the journey and the keys the actions left pending."""
    journey = Journey.start("p-1", FLOW.id)
    book: set[str] = set()
    for event in events:
        decision = advance(journey, event, FLOW, now)
        journey = decision.journey
        for action in decision.actions:
            if isinstance(action, ScheduleMessage | ExpireMessage):
                book.add(action.message.key)
            elif isinstance(action, CancelMessage):
                book.discard(action.message.key)
    return journey, book


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), data=st.data())
def test_any_reordering_or_duplication_gives_the_same_messages(
    stream: list[Event], data: st.DataObject
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    expected, expected_book = fold(stream, now)
    shuffled = data.draw(st.permutations(stream))
    repeats = data.draw(st.lists(st.sampled_from(stream), max_size=4))
    positions = data.draw(
        st.lists(st.integers(0, len(shuffled)), min_size=len(repeats), max_size=len(repeats))
    )
    noisy = list(shuffled)
    for event, position in zip(repeats, positions, strict=True):
        noisy.insert(position, event)
    journey, book = fold(noisy, now)
    assert journey.messages == expected.messages
    assert book == set(journey.messages) == expected_book
    assert journey.episodes == expected.episodes


# The simulator runs the real processor and dispatcher on a store: fewer examples.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams())
def test_nothing_is_sent_for_an_appointment_while_it_is_cancelled(
    flow_templates: TemplateSet, stream: list[Event]
) -> None:
    appointment_of = {}
    journey = Journey.start("p-1", FLOW.id)
    for event in stream:
        decision = advance(journey, event, FLOW, event.occurred_at)
        journey = decision.journey
        for action in decision.actions:
            if isinstance(action, ScheduleMessage):
                appointment_of[action.message.key] = action.message.appointment_id

    def cancelled_at(appointment: str | None, instant: datetime) -> bool:
        history = [
            e
            for e in stream
            if e.appointment and e.appointment.id == appointment and e.occurred_at <= instant
        ]
        return bool(history) and history[-1].type.value == "appointment.cancelled"

    for record in simulate(stream, FLOWS, flow_templates):
        if record.status == "sent" and record.stage != "rebooking":
            assert not cancelled_at(appointment_of[record.key], record.at), record


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams())
def test_nothing_is_sent_inside_quiet_hours_in_the_patients_zone(
    flow_templates: TemplateSet, stream: list[Event]
) -> None:
    zone = ZoneInfo(stream[0].patient.timezone or FLOW.timezone)
    sent = [r for r in simulate(stream, FLOWS, flow_templates) if r.status == "sent"]
    for record in sent:
        local = record.at.astimezone(zone).time()
        assert not FLOW.quiet_hours.contains(local), (record.message, record.at.astimezone(zone))
