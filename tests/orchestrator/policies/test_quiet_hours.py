"""Quiet hours and send windows, on the recipient's wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.flows.model import QuietHours
from orchestrator.policies.quiet_hours import in_window, next_allowed
from tests.builders import make_flow

CHICAGO = ZoneInfo("America/Chicago")
TOKYO = ZoneInfo("Asia/Tokyo")
QUIET = QuietHours(time(21, 0), time(8, 0))
NEVER_QUIET = QuietHours(time(0, 0), time(0, 0))
OFFICE = (time(9, 0), time(17, 0))


def chicago(*args: int) -> datetime:
    """An instant written as Chicago wall time, returned in UTC as the core holds it."""
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)


def test_flow_quiet_hours_default_to_nine_pm_until_eight_am() -> None:
    assert make_flow().quiet_hours == QUIET


# --- quiet hours ----------------------------------------------------------------------


def test_late_evening_is_deferred_to_eight_next_morning() -> None:
    allowed = next_allowed(chicago(2026, 3, 3, 22, 15), CHICAGO, QUIET)

    assert allowed == chicago(2026, 3, 4, 8, 0)


def test_small_hours_are_deferred_to_eight_the_same_morning() -> None:
    allowed = next_allowed(chicago(2026, 3, 4, 3, 0), CHICAGO, QUIET)

    assert allowed == chicago(2026, 3, 4, 8, 0)


def test_nine_pm_exactly_is_quiet() -> None:
    allowed = next_allowed(chicago(2026, 3, 3, 21, 0), CHICAGO, QUIET)

    assert allowed == chicago(2026, 3, 4, 8, 0)


def test_a_minute_before_nine_pm_is_allowed_as_is() -> None:
    at = chicago(2026, 3, 3, 20, 59)

    assert next_allowed(at, CHICAGO, QUIET) == at


def test_eight_am_exactly_is_allowed_as_is() -> None:
    at = chicago(2026, 3, 4, 8, 0)

    assert next_allowed(at, CHICAGO, QUIET) == at


def test_quiet_hours_are_read_in_the_recipients_zone_not_utc() -> None:
    # 03:00 UTC is 21:00 in Chicago (quiet) and 12:00 in Tokyo (allowed).
    at = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)

    assert next_allowed(at, TOKYO, QUIET) == at
    assert next_allowed(at, CHICAGO, QUIET) == chicago(2026, 3, 4, 8, 0)


def test_quiet_hours_from_a_flow_override_are_honoured() -> None:
    quiet = make_flow(quiet_hours={"start": "22:00", "end": "07:00"}).quiet_hours

    assert next_allowed(chicago(2026, 3, 3, 21, 30), CHICAGO, quiet) == chicago(2026, 3, 3, 21, 30)
    assert next_allowed(chicago(2026, 3, 3, 22, 30), CHICAGO, quiet) == chicago(2026, 3, 4, 7, 0)


def test_quiet_hours_that_do_not_wrap_midnight() -> None:
    lunch = QuietHours(time(12, 0), time(13, 0))

    assert next_allowed(chicago(2026, 3, 3, 12, 30), CHICAGO, lunch) == chicago(2026, 3, 3, 13, 0)
    assert next_allowed(chicago(2026, 3, 3, 23, 30), CHICAGO, lunch) == chicago(2026, 3, 3, 23, 30)


# --- daylight-saving weekends ---------------------------------------------------------


def test_deferral_over_spring_forward_lands_at_eight_local_an_hour_earlier_in_utc() -> None:
    before = next_allowed(chicago(2026, 3, 6, 22, 0), CHICAGO, QUIET)  # Friday night, CST
    across = next_allowed(chicago(2026, 3, 7, 22, 0), CHICAGO, QUIET)  # Saturday night

    assert before == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # 08:00 CST
    assert across == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 08:00 CDT
    assert across - before == timedelta(hours=23)
    assert across.astimezone(CHICAGO).time() == time(8, 0)


def test_deferral_from_before_the_gap_lands_at_eight_after_it() -> None:
    allowed = next_allowed(chicago(2026, 3, 8, 1, 30), CHICAGO, QUIET)  # 01:30 CST

    assert allowed == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_deferral_over_fall_back_lands_at_eight_local_an_hour_later_in_utc() -> None:
    before = next_allowed(chicago(2026, 10, 30, 22, 0), CHICAGO, QUIET)  # Friday night, CDT
    across = next_allowed(chicago(2026, 10, 31, 22, 0), CHICAGO, QUIET)  # Saturday night

    assert before == datetime(2026, 10, 31, 13, 0, tzinfo=UTC)  # 08:00 CDT
    assert across == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)  # 08:00 CST
    assert across - before == timedelta(hours=25)
    assert across.astimezone(CHICAGO).time() == time(8, 0)


def test_deferral_from_the_repeated_hour_lands_at_eight_the_same_morning() -> None:
    second_one_thirty = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)  # 01:30 CST, after fall-back
    assert second_one_thirty.astimezone(CHICAGO).tzname() == "CST"

    allowed = next_allowed(second_one_thirty, CHICAGO, QUIET)

    assert allowed == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)


def test_quiet_hours_ending_in_the_repeated_hour_end_at_its_second_occurrence() -> None:
    # 01:10 CST is the repeated hour's second pass; the clock next reads 01:30 twenty
    # minutes later, so that is the first instant outside quiet hours.
    quiet = QuietHours(time(21, 0), time(1, 30))
    second_one_ten = datetime(2026, 11, 1, 7, 10, tzinfo=UTC)

    allowed = next_allowed(second_one_ten, CHICAGO, quiet)

    assert allowed == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)


# --- send windows ---------------------------------------------------------------------


def test_before_a_send_window_defers_to_its_start_the_same_day() -> None:
    allowed = next_allowed(chicago(2026, 3, 4, 8, 30), CHICAGO, QUIET, OFFICE)

    assert allowed == chicago(2026, 3, 4, 9, 0)


def test_after_a_send_window_defers_to_its_start_next_day() -> None:
    allowed = next_allowed(chicago(2026, 3, 4, 17, 0), CHICAGO, QUIET, OFFICE)

    assert allowed == chicago(2026, 3, 5, 9, 0)


def test_quiet_hours_then_send_window_settle_on_the_window_start() -> None:
    allowed = next_allowed(chicago(2026, 3, 4, 23, 0), CHICAGO, QUIET, OFFICE)

    assert allowed == chicago(2026, 3, 5, 9, 0)


def test_inside_the_send_window_is_allowed_as_is() -> None:
    at = chicago(2026, 3, 4, 16, 59)

    assert next_allowed(at, CHICAGO, QUIET, OFFICE) == at


def test_a_send_window_that_wraps_midnight_allows_both_sides_of_midnight() -> None:
    night = (time(22, 0), time(6, 0))

    assert next_allowed(chicago(2026, 3, 4, 23, 0), CHICAGO, NEVER_QUIET, night) == chicago(
        2026, 3, 4, 23, 0
    )
    assert next_allowed(chicago(2026, 3, 5, 5, 59), CHICAGO, NEVER_QUIET, night) == chicago(
        2026, 3, 5, 5, 59
    )
    assert next_allowed(chicago(2026, 3, 5, 6, 0), CHICAGO, NEVER_QUIET, night) == chicago(
        2026, 3, 5, 22, 0
    )


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 59), True),
        (time(0, 0), True),
        (time(5, 59), True),
        (time(6, 0), False),
        (time(12, 0), False),
    ],
)
def test_window_wrapping_midnight_contains_late_and_early_hours(local: time, inside: bool) -> None:
    assert in_window(local, (time(22, 0), time(6, 0))) is inside


@pytest.mark.parametrize(
    ("local", "inside"),
    [(time(8, 59), False), (time(9, 0), True), (time(16, 59), True), (time(17, 0), False)],
)
def test_window_is_closed_at_its_start_and_open_at_its_end(local: time, inside: bool) -> None:
    assert in_window(local, OFFICE) is inside


# --- invariants -----------------------------------------------------------------------


@settings(database=None, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from([CHICAGO, TOKYO, ZoneInfo("Europe/London"), ZoneInfo("America/New_York")]),
)
def test_next_allowed_is_never_earlier_nor_inside_quiet_hours_nor_outside_the_window(
    at: datetime, zone: ZoneInfo
) -> None:
    allowed = next_allowed(at, zone, QUIET, OFFICE)

    local = allowed.astimezone(zone).time()
    assert allowed >= at
    assert allowed - at < timedelta(days=2)
    assert not QUIET.contains(local)
    assert in_window(local, OFFICE)
