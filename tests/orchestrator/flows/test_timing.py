"""Timing expressions: parsing, printing and resolving to UTC instants across DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.flows.timing import Anchor, Timing, parse_duration, parse_timing

CHICAGO = ZoneInfo("America/Chicago")


# --- parse_timing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("appointment.start - 72h", Timing(Anchor.APPOINTMENT_START, -timedelta(hours=72))),
        ("stage.entered + 10m", Timing(Anchor.STAGE_ENTERED, timedelta(minutes=10))),
        (
            "encounter.discharged_at + 1d at 10:00",
            Timing(Anchor.ENCOUNTER_DISCHARGED_AT, timedelta(days=1), time(10, 0)),
        ),
        ("stage.entered", Timing(Anchor.STAGE_ENTERED)),
        ("event.occurred_at-1d12h", Timing(Anchor.EVENT_OCCURRED_AT, -timedelta(hours=36))),
        (
            "  encounter.admitted_at + 2w  ",
            Timing(Anchor.ENCOUNTER_ADMITTED_AT, timedelta(weeks=2)),
        ),
        ("stage.entered at 9:05", Timing(Anchor.STAGE_ENTERED, at=time(9, 5))),
    ],
)
def test_timing_forms_parse(text: str, expected: Timing) -> None:
    assert parse_timing(text) == expected


@pytest.mark.parametrize(
    "text", ["3 days", "appointment.start - 3x", "appointment.start -", "", "72h before"]
)
def test_malformed_timing_names_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected a timing such as "appointment\.start - 72h"'):
        parse_timing(text)


def test_malformed_timing_quotes_what_it_got() -> None:
    with pytest.raises(ValueError, match='got "3 days"'):
        parse_timing("3 days")


def test_unknown_anchor_is_named_with_the_known_anchors() -> None:
    with pytest.raises(ValueError, match=r'unknown anchor "appointment\.end"') as caught:
        parse_timing("appointment.end - 72h")

    for anchor in Anchor:
        assert anchor.value in str(caught.value)


@pytest.mark.parametrize("text", ["stage.entered + 1d at 25:00", "stage.entered + 1d at 10:60"])
def test_impossible_time_of_day_names_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match='expected a time of day such as "08:00"'):
        parse_timing(text)


# --- parse_duration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("72h", timedelta(hours=72)),
        ("1w2d3h4m", timedelta(weeks=1, days=2, hours=3, minutes=4)),
    ],
)
def test_duration_forms_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0", "3x", "1h1d", "3 days", "-2h"])
def test_malformed_duration_names_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected a duration such as "72h"'):
        parse_duration(text)


# --- resolve: exact offsets -----------------------------------------------------------


def test_hours_before_an_instant_are_exact_elapsed_time_across_spring_forward() -> None:
    # Tuesday 10:30 CDT, after the change; 72h earlier is Saturday 09:30 CST.
    start = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)

    due = parse_timing("appointment.start - 72h").resolve(start, CHICAGO)

    assert start - due == timedelta(hours=72)
    assert due == datetime(2026, 3, 7, 15, 30, tzinfo=UTC)
    assert due.astimezone(CHICAGO).hour == 9


def test_a_day_without_a_time_of_day_is_24_hours_across_fall_back() -> None:
    entered = datetime(2026, 10, 31, 19, 0, tzinfo=UTC)  # Saturday 14:00 CDT

    due = parse_timing("stage.entered + 1d").resolve(entered, CHICAGO)

    assert due - entered == timedelta(hours=24)
    assert due.astimezone(CHICAGO).hour == 13


def test_exact_offsets_stay_exact_when_the_anchor_carries_a_local_zone() -> None:
    # Same instant as above, written in Chicago time: the answer must not change.
    start = datetime(2026, 3, 10, 10, 30, tzinfo=CHICAGO)

    due = parse_timing("appointment.start - 72h").resolve(start, CHICAGO)

    assert due == datetime(2026, 3, 7, 15, 30, tzinfo=UTC)


def test_resolve_returns_utc_for_an_offset_anchor() -> None:
    entered = datetime(2026, 3, 2, 8, 0, tzinfo=CHICAGO)

    due = parse_timing("stage.entered + 10m").resolve(entered, CHICAGO)

    assert due == datetime(2026, 3, 2, 14, 10, tzinfo=UTC)
    assert due.tzinfo is UTC


# --- resolve: calendar days at a local time -------------------------------------------


def test_next_day_at_ten_over_spring_forward_is_ten_local() -> None:
    discharged = datetime(2026, 3, 7, 14, 0, tzinfo=CHICAGO)  # Saturday, CST

    due = parse_timing("encounter.discharged_at + 1d at 10:00").resolve(discharged, CHICAGO)

    assert due == datetime(2026, 3, 8, 15, 0, tzinfo=UTC)  # Sunday 10:00 CDT
    assert due - discharged == timedelta(hours=19)


def test_next_day_at_ten_over_fall_back_is_ten_local() -> None:
    discharged = datetime(2026, 10, 31, 14, 0, tzinfo=CHICAGO)  # Saturday, CDT

    due = parse_timing("encounter.discharged_at + 1d at 10:00").resolve(discharged, CHICAGO)

    assert due == datetime(2026, 11, 1, 16, 0, tzinfo=UTC)  # Sunday 10:00 CST
    assert due - discharged == timedelta(hours=21)


def test_calendar_days_count_in_the_zone_not_in_utc() -> None:
    # 23:30 in Chicago is already the next day in UTC.
    entered = datetime(2026, 3, 2, 23, 30, tzinfo=CHICAGO)

    due = parse_timing("stage.entered + 1d at 10:00").resolve(entered, CHICAGO)

    assert due == datetime(2026, 3, 3, 16, 0, tzinfo=UTC)


def test_days_before_at_a_local_time_count_back_calendar_days() -> None:
    start = datetime(2026, 3, 9, 8, 0, tzinfo=CHICAGO)  # Monday CDT

    due = parse_timing("appointment.start - 1d at 10:00").resolve(start, CHICAGO)

    assert due == datetime(2026, 3, 8, 15, 0, tzinfo=UTC)  # Sunday 10:00 CDT


def test_wall_time_skipped_by_spring_forward_lands_after_the_gap() -> None:
    entered = datetime(2026, 3, 7, 14, 0, tzinfo=CHICAGO)

    due = parse_timing("stage.entered + 1d at 02:30").resolve(entered, CHICAGO)

    assert due == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)
    local = due.astimezone(CHICAGO)
    assert (local.hour, local.minute, local.tzname()) == (3, 30, "CDT")


def test_ambiguous_wall_time_at_fall_back_takes_the_first_occurrence() -> None:
    entered = datetime(2026, 10, 31, 14, 0, tzinfo=CHICAGO)

    due = parse_timing("stage.entered + 1d at 01:30").resolve(entered, CHICAGO)

    assert due == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert due.astimezone(CHICAGO).tzname() == "CDT"


# --- printing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "appointment.start - 72h",
        "stage.entered + 10m",
        "encounter.discharged_at + 1d at 10:00",
        "stage.entered",
        "event.occurred_at - 2w at 09:05",
        "stage.entered + 1d12h30m",
    ],
)
def test_printed_timing_parses_back_to_the_same_timing(text: str) -> None:
    timing = parse_timing(text)

    assert parse_timing(str(timing)) == timing


def test_printed_timing_reads_like_a_flow_file() -> None:
    assert str(parse_timing("encounter.discharged_at+1d  at 9:00")) == (
        "encounter.discharged_at + 1d at 09:00"
    )


@settings(database=None, deadline=None)
@given(
    anchor=st.sampled_from(Anchor),
    minutes=st.integers(min_value=-60 * 24 * 60, max_value=60 * 24 * 60),
    at=st.none() | st.times().map(lambda t: time(t.hour, t.minute)),
)
def test_any_timing_prints_to_text_that_parses_back_to_it(
    anchor: Anchor, minutes: int, at: time | None
) -> None:
    timing = Timing(anchor, timedelta(minutes=minutes), at)

    assert parse_timing(str(timing)) == timing
