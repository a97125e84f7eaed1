"""Quiet hours and send windows, in the recipient's own time zone.

Both are wall-clock rules: they are checked on the local time of the
instant, and the next allowed instant is built from a local date and time, so
a daylight-saving change neither shifts the hours nor loses a day.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..flows.model import QuietHours
from ..flows.timing import local_time_of

__all__ = ["in_window", "next_allowed"]


def in_window(local: time, window: tuple[time, time]) -> bool:
    """Whether a local time is inside `[start, end)`; a window may wrap midnight."""
    start, end = window
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def next_allowed(
    at: datetime, zone: ZoneInfo, quiet: QuietHours, window: tuple[time, time] | None = None
) -> datetime:
    """The first instant at or after `at` outside quiet hours and inside `window`.

    Returns `at` itself when it is already allowed.
    """
    candidate = at
    for _ in range(4):  # quiet end, then window start, settle within two days
        local = candidate.astimezone(zone)
        if quiet.contains(local.time().replace(tzinfo=None)):
            candidate = _next_wall_time(local, quiet.end, zone)
            continue
        if window is not None and not in_window(local.time().replace(tzinfo=None), window):
            candidate = _next_wall_time(local, window[0], zone)
            continue
        return candidate
    return candidate


def _next_wall_time(local: datetime, wall: time, zone: ZoneInfo) -> datetime:
    """The next instant, after `local`, at which the clock in `zone` reads `wall`.

    A wall time that a fall-back change repeats counts twice: after its first
    occurrence, its second is next.
    """
    for day in (local.date(), local.date() + timedelta(days=1)):
        first = local_time_of(day, wall, zone)
        if first > local:
            return first
        second = datetime.combine(day, wall, tzinfo=zone).replace(fold=1).astimezone(UTC)
        if second > local and second.astimezone(zone).time() == wall:
            return second
    return local_time_of(local.date() + timedelta(days=2), wall, zone)
