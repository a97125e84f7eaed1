"""Figures from a known stream match the hand counts; the worksheet formats; the small-count
rule; holdout assignment."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import replace

import pytest

from orchestrator.clock import VirtualClock
from orchestrator.decisions import DecisionRecord
from orchestrator.event import Event
from orchestrator.flows.model import Flow
from orchestrator.insight import (
    CSV_COLUMNS,
    FlowFigures,
    PatientEvent,
    Ratio,
    StageFigures,
    episode_personas,
    flow_figures,
    mermaid,
    rate_hidden,
    read_csv,
    shown,
    shown_below,
    shown_rate,
    to_csv,
    to_markdown,
)
from orchestrator.journey import EpisodeStatus, Journey
from orchestrator.policies import held_out
from orchestrator.simulate import Simulator
from orchestrator.templates import TemplateSet
from tests.builders import at, make_event, make_patient, templates_for
from tests.orchestrator.insight.stream import insight_flow, insight_stream

FLOW = insight_flow()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> TemplateSet:
    return templates_for([FLOW], tmp_path_factory.mktemp("templates"))


def run(
    flow: Flow, events: list[Event], templates: TemplateSet
) -> tuple[list[DecisionRecord], list[Journey]]:
    """The decisions and the journeys of a simulated run of `events`, played as given."""
    with Simulator({flow.id: flow}, VirtualClock(events[0].occurred_at), templates) as simulator:
        records = [r for e in events for r in simulator.feed(e)] + list(simulator.run_until(None))
        return records, list(simulator.journeys.values())


@functools.cache  # one run per persona: the figures tests only read what it returns
def simulated(
    templates: TemplateSet, persona: str | None = None
) -> tuple[FlowFigures, list[DecisionRecord], list[Journey]]:
    events = insight_stream()
    records, journeys = run(FLOW, events, templates)
    seen = [PatientEvent(e.id, e.patient.id, e.type, e.occurred_at) for e in events]
    figures = flow_figures(FLOW, journeys, records, seen, persona=persona)
    return figures, records, journeys


def test_the_funnel_matches_the_hand_counts(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]

    assert (figures.episodes, figures.patients) == (5, 5)
    booked = figures.stage("booked")
    # p-3 enters twice; p-1 and p-3 (twice) move on, p-4 drops off, p-2 and p-5 are still there.
    assert (booked.entered, booked.moved_on, booked.dropped_off, booked.still_here) == (6, 3, 1, 2)
    assert figures.stage("visited").entered == figures.stage("visited").completed == 2
    assert (figures.stage("rebooking").entered, figures.stage("rebooking").moved_on) == (1, 1)
    assert (figures.stage("referred").entered, figures.stage("referred").moved_on) == (1, 1)
    for s in figures.stages:
        assert s.entered == s.moved_on + s.dropped_off + s.completed + s.still_here
    assert figures.transitions == {
        ("booked", "rebooking"): 1,
        ("booked", "visited"): 2,
        ("rebooking", "booked"): 1,
        ("referred", "booked"): 1,
    }


def test_a_completed_journey_exited_later_still_counts_as_completed(templates: TemplateSet) -> None:
    # p-1 attended (the final stage), then opts out days later: the episode is exited,
    # but the journey was completed, not dropped off at its last stage.
    p1 = make_patient("p-1", phone="+15555550110")
    late = make_event(
        "consent.opted_out", id="e1-out", occurred_at=at(days=20), patient=p1, appointment_id=None
    )
    events = [*insight_stream(), late]
    records, journeys = run(FLOW, events, templates)
    episode = next(e for j in journeys if j.patient_id == "p-1" for e in j.episodes)
    assert episode.status is EpisodeStatus.EXITED

    visited = flow_figures(FLOW, journeys, records).stage("visited")

    assert (visited.entered, visited.completed, visited.dropped_off) == (2, 2, 0)
    assert simulated(templates)[0].stage("visited") == visited


def test_the_outcome_metrics_match_the_hand_counts(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]
    booked = figures.stage("booked")

    # Every booked episode was asked for the intake (the nudge was scheduled); p-1 completed it.
    assert (booked.intake_completion.numerator, booked.intake_completion.denominator) == (1, 5)
    # Visits that ended: p-1 and p-3 attended, p-2 missed (an event the flow does not follow).
    assert (booked.no_show.numerator, booked.no_show.denominator) == (1, 3)
    # Five episodes were sent a confirmation while booked; p-2 replied.
    reply = booked.confirmation_by_reply
    assert (reply.numerator, reply.denominator) == (1, 5)
    # p-5 booked 48 hours after the referral.
    referral = figures.stage("referred").referral_to_booking
    assert (referral.count, referral.median) == (1, 48.0)


def test_the_message_figures_match_the_hand_counts(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]

    confirmation = figures.message("confirmation")
    assert (confirmation.scheduled, confirmation.sent, confirmation.cancelled) == (6, 6, 0)
    # Cancelled: p-1 completed the intake, p-3's first booking was cancelled, p-4 opted out.
    nudge = figures.message("intake_nudge")
    assert (nudge.scheduled, nudge.sent, nudge.cancelled) == (6, 3, 3)
    # Six bookings and p-1's caregiver's copy.
    assert figures.message("reminder_24h").scheduled == 7
    assert figures.message("rebooking_nudge").cancelled == 1
    assert sum(d.sent for d in figures.daily) == sum(m.sent for m in figures.messages)


def test_figures_break_down_by_persona(templates: TemplateSet) -> None:
    everyone, _, journeys = simulated(templates)
    caregivers = simulated(templates, "caregiver_coordinator")[0]
    alone = simulated(templates, "self_managing")[0]

    personas = episode_personas(FLOW, journeys)
    assert sorted(p or "" for p in personas.values()) == [
        "caregiver_coordinator",
        *["self_managing"] * 4,
    ]
    assert (caregivers.episodes, alone.episodes) == (1, 4)
    for a, b, c in zip(everyone.stages, caregivers.stages, alone.stages, strict=True):
        assert a.entered == b.entered + c.entered
    for a, b, c in zip(everyone.messages, caregivers.messages, alone.messages, strict=True):
        assert a.sent == b.sent + c.sent


def test_the_csv_round_trips(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]
    text = to_csv(FLOW, figures)

    rows = read_csv(text)
    assert rows == list(csv.DictReader(io.StringIO(text)))
    stages = {r["stage"]: r for r in rows if r["kind"] == "stage" and r["stage"]}
    assert [r["category"] for r in rows if r["kind"] == "stage"][:2] == [
        "awareness",
        "consideration",
    ]
    for s in figures.stages:
        row = stages[s.stage_id]
        assert int(row["entered"]) == s.entered
        assert int(row["moved_on"]) == s.moved_on
        assert int(row["dropped_off"]) == s.dropped_off
        assert int(row["no_shows"]) == s.no_show.numerator
        assert int(row["visits_ended"]) == s.no_show.denominator
    assert stages["referred"]["to_be"] == (
        "Text a booking link the same day (operations: Scheduling team, by 2026-06-30)"
    )
    assert stages["referred"]["as_is"] == "Referrals wait for a call back"
    messages = {r["message"]: r for r in rows if r["kind"] == "message"}
    for m in figures.messages:
        assert int(messages[m.message_id]["sent"]) == m.sent
        assert int(messages[m.message_id]["scheduled"]) == m.scheduled
    # Written again from what was read, the text is the same.
    again = io.StringIO()
    writer = csv.DictWriter(again, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    assert again.getvalue() == text


def test_the_csv_applies_the_small_count_rule_when_given_it(templates: TemplateSet) -> None:
    booked = StageFigures("booked", 25, 20, 5, 0, 0, no_show=Ratio(48, 50))
    figures = with_booked(simulated(templates)[0], booked)

    rows = read_csv(to_csv(FLOW, figures, shown))
    row = next(r for r in rows if r["kind"] == "stage" and r["stage"] == "booked")
    cells = [row[name] for name in ("entered", "moved_on", "dropped_off", "completed")]
    assert cells == ["25", "<11", "<11", "0"]
    # 48 no-shows of 50 visits would give the 2 attended away.
    assert (row["no_shows"], row["visits_ended"]) == ("<11", "50")
    exact = read_csv(to_csv(FLOW, figures))
    assert next(r for r in exact if r["stage"] == "booked")["dropped_off"] == "5"


def test_the_csv_has_a_numeric_column_per_suppression_reason_that_sums(
    templates: TemplateSet,
) -> None:
    figures = simulated(templates)[0]
    first, *rest = figures.messages
    suppressed = {"holdout": 30, "frequency_cap": 12, "consent:provider_opt_out": 4, "new": 2}
    figures = replace(figures, messages=(replace(first, suppressed=suppressed), *rest))

    rows = [r for r in read_csv(to_csv(FLOW, figures)) if r["kind"] == "message"]
    columns = ["suppressed", *(c for c in CSV_COLUMNS if c.startswith("suppressed_"))]

    assert {"suppressed_holdout", "suppressed_consent", "suppressed_other"} <= set(columns)
    # Every message row holds a number in every suppression column, 0 and not blank.
    counts = [{c: int(r[c]) for c in columns} for r in rows]
    row = counts[[r["message"] for r in rows].index(first.message_id)]
    assert row["suppressed"] == 48
    assert (row["suppressed_holdout"], row["suppressed_frequency_cap"]) == (30, 12)
    assert (row["suppressed_consent_provider_opt_out"], row["suppressed_other"]) == (4, 2)
    assert row["suppressed_consent"] == 0
    for each in counts:
        assert each["suppressed"] == sum(v for c, v in each.items() if c != "suppressed")
    # The column sums as a spreadsheet would sum it.
    assert sum(c["suppressed"] for c in counts) == sum(m.suppressed_total for m in figures.messages)


def test_the_csv_hides_a_small_suppression_count_with_a_companion(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]
    first, *rest = figures.messages
    figures = replace(
        figures, messages=(replace(first, suppressed={"holdout": 30, "consent": 4}), *rest)
    )

    rows = read_csv(to_csv(FLOW, figures, shown))
    row = next(r for r in rows if r["kind"] == "message" and r["message"] == first.message_id)

    # 34 = 30 + 4: with only the 4 hidden, 34 - 30 would give it back.
    assert (row["suppressed"], row["suppressed_holdout"], row["suppressed_consent"]) == (
        "34",
        "<11",
        "<11",
    )
    assert row["suppressed_frequency_cap"] == "0"


def test_a_markdown_ratio_is_hidden_when_its_complement_would_be(templates: TemplateSet) -> None:
    booked = StageFigures("booked", 25, 20, 5, 0, 0, no_show=Ratio(48, 50))
    figures = with_booked(simulated(templates)[0], booked)

    hiding = to_markdown(FLOW, figures, shown)
    assert "no-show: <11 of 50" in hiding
    assert "96%" not in hiding and "48 of 50" not in hiding
    assert "no-show: 48 of 50 (96%)" in to_markdown(FLOW, figures)
    halves = with_booked(figures, replace(booked, no_show=Ratio(25, 50)))
    assert "no-show: 25 of 50 (50%)" in to_markdown(FLOW, halves, shown)


def test_the_markdown_has_a_row_per_stage_and_category_gaps(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]
    text = to_markdown(FLOW, figures)

    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    rows = table[1 : 1 + len(FLOW.stages) + 3]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == [
        "Awareness",
        "Consideration",
        "Access",
        "Access",
        "Diagnosis and planning",
        "Treatment",
        "Follow-up",
    ]
    booked = next(r for r in rows if "(`booked`)" in r)
    assert "| 6 | 3 | 1 | 0 | 2 |" in booked
    assert "no-show: 1 of 3 (33%)" in booked
    assert "Text a booking link the same day" in text
    assert "Caregiver coordinating transport and forms" in text


def test_the_mermaid_diagram_draws_declared_and_measured_moves(templates: TemplateSet) -> None:
    figures = simulated(templates)[0]
    text = mermaid(FLOW, figures)

    assert text.startswith("flowchart LR\n")
    assert 's_booked -->|"appointment.cancelled: 1"| s_rebooking' in text
    assert 's_booked -->|"appointment.completed: 2"| s_visited' in text
    assert 'start -->|"referral.received"| s_referred' in text
    assert mermaid(FLOW).count("-->") == text.count("-->")


def with_booked(figures: FlowFigures, booked: StageFigures) -> FlowFigures:
    """`figures` with the `booked` stage's figures replaced."""
    stages = tuple(booked if s.stage_id == "booked" else s for s in figures.stages)
    return replace(figures, stages=stages)


def test_a_lone_hidden_funnel_cell_gets_a_hidden_companion_in_markdown_and_mermaid(
    templates: TemplateSet,
) -> None:
    # 25 entered = 20 moved on + 5 dropped off: "<11" alone would give the 5 back.
    figures = with_booked(simulated(templates)[0], StageFigures("booked", 25, 20, 5, 0, 0))

    booked = next(r for r in to_markdown(FLOW, figures, shown).splitlines() if "(`booked`)" in r)
    assert "| 25 | <11 | <11 | 0 | 0 |" in booked
    assert "| 25 | 20 | 5 | 0 | 0 |" in to_markdown(FLOW, figures)  # exact without the rule
    assert "Booked<br>entered 25, dropped off <11" in mermaid(FLOW, figures, shown)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0"), (1, "<11"), (10, "<11"), (11, "11"), (250, "250")]
)
def test_counts_under_eleven_are_hidden(count: int, text: str) -> None:
    assert shown(count) == text


def test_a_rate_is_hidden_when_any_of_its_counts_would_be() -> None:
    assert shown_rate(0, 0) == "-"
    assert shown_rate(5, 100) == "<11"  # the numerator
    assert shown_rate(95, 100) == "<11"  # the complement gives the small count away
    assert shown_rate(50, 100) == "50%"
    assert shown_rate(11, 12) == "<11"
    assert rate_hidden(48, 50) and not rate_hidden(25, 50)


def test_holdout_assignment_is_deterministic_and_near_its_percentage() -> None:
    patients = [f"p-{i}" for i in range(2000)]
    first = [held_out(p, "flow", "reminder", 20) for p in patients]

    assert first == [held_out(p, "flow", "reminder", 20) for p in patients]
    assert 0.17 < sum(first) / len(first) < 0.23
    assert not any(held_out(p, "flow", "reminder", None) for p in patients)
    # Another message draws another group.
    assert first != [held_out(p, "flow", "survey", 20) for p in patients]


def test_a_held_out_message_is_suppressed_with_reason_holdout_and_compared(
    templates: TemplateSet,
) -> None:
    data_flow = insight_flow()
    stages = []
    for stage in data_flow.stages:
        messages = tuple(
            replace(m, holdout=50.0) if m.id == "confirmation" else m for m in stage.messages
        )
        stages.append(replace(stage, messages=messages))
    flow = replace(data_flow, stages=tuple(stages))
    events = [
        make_event(
            "appointment.booked",
            id=f"book-{i}",
            patient=make_patient(f"p-{i}", phone=f"+155555501{i % 100:02d}"),
            appointment_id=f"a-{i}",
        )
        for i in range(60)
    ]
    records, journeys = run(flow, events, templates)

    final = {
        r.patient_id: r
        for r in records
        if r.message == "confirmation" and r.status in ("sent", "suppressed")
    }
    assert len(final) == 60
    for patient_id, r in final.items():
        expected = held_out(patient_id, flow.id, "confirmation", 50)
        assert (r.status, r.reason) == (("suppressed", "holdout") if expected else ("sent", None))
    figures = flow_figures(flow, journeys, records)
    (holdout,) = figures.holdouts
    held = sum(held_out(f"p-{i}", flow.id, "confirmation", 50) for i in range(60))
    assert (holdout.messaged.episodes, holdout.held_out.episodes) == (60 - held, held)
    assert figures.message("confirmation").suppressed == {"holdout": held}
    assert figures.suppression["holdout"] == held


def test_an_event_of_a_followed_type_no_episode_holds_does_not_count(
    templates: TemplateSet,
) -> None:
    events = insight_stream()
    records, journeys = run(FLOW, events, templates)
    seen = [PatientEvent(e.id, e.patient.id, e.type, e.occurred_at) for e in events]
    # p-5 attends some other care path's visit; this flow follows completions but took none.
    other = make_event(
        "appointment.completed",
        id="other-visit",
        occurred_at=events[-1].occurred_at,
        patient=make_patient("p-5"),
        appointment_id="a-elsewhere",
        service="dermatology.visit",
    )
    seen.append(PatientEvent(other.id, "p-5", other.type, other.occurred_at))

    figures = flow_figures(FLOW, journeys, records, seen)

    no_show = figures.stage("booked").no_show
    assert (no_show.numerator, no_show.denominator) == (1, 3)


def test_a_lowered_threshold_hides_fewer_counts() -> None:
    assert [shown_below(5)(n) for n in (0, 1, 4, 5, 10)] == ["0", "<5", "<5", "5", "10"]
    assert [shown_below(1)(n) for n in (0, 1, 4)] == ["0", "1", "4"]
    assert shown_below(11) is shown
