"""When a flow message is due: anchors, durations and local times of day.

A timing reads `<anchor> [(+|-) <duration>] [at HH:MM]`, for example
`appointment.start - 72h`, `stage.entered + 10m` or
`encounter.discharged_at + 1d at 10:00`. Without `at`, the offset is exact
elapsed time (1d is 24h). With `at`, days and weeks count calendar days in the
recipient's time zone and the clock time is set there, so a daylight-saving
change moves neither the day nor the hour a person sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "Anchor",
    "Timing",
    "local_time_of",
    "parse_duration",
    "parse_local_time",
    "parse_timing",
]


class Anchor(StrEnum):
    """The instants a message can be timed from."""

    STAGE_ENTERED = "stage.entered"
    EVENT_OCCURRED_AT = "event.occurred_at"
    APPOINTMENT_START = "appointment.start"
    ENCOUNTER_ADMITTED_AT = "encounter.admitted_at"
    ENCOUNTER_DISCHARGED_AT = "encounter.discharged_at"


_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_TIMING = re.compile(
    r"^\s*(?P<anchor>[a-z_]+\.[a-z_]+)"
    r"(?:\s*(?P<sign>[+-])\s*(?P<duration>[0-9wdhm]+))?"
    r"(?:\s+at\s+(?P<at>\d{1,2}:\d{2}))?\s*$"
)


def parse_duration(text: str) -> timedelta:
    """Parse `72h`, `1d12h`, `2w`, `90m`.

    Raises:
        ValueError: with the expected form.
    """
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f'expected a duration such as "72h", "1d12h" or "30m", got "{text}"')
    weeks, days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)


def parse_local_time(text: str) -> time:
    """Parse a local time of day `HH:MM` (24-hour clock)."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(f'expected a time of day such as "08:00", got "{text}"') from None


@dataclass(frozen=True, slots=True)
class Timing:
    anchor: Anchor
    offset: timedelta = timedelta(0)
    at: time | None = None

    def __str__(self) -> str:
        text = self.anchor.value
        if self.offset:
            sign = "-" if self.offset < timedelta(0) else "+"
            text += f" {sign} {_format_duration(abs(self.offset))}"
        if self.at is not None:
            text += f" at {self.at:%H:%M}"
        return text

    def resolve(self, anchor_at: datetime, zone: ZoneInfo) -> datetime:
        """Return the UTC instant this timing names, given the anchor's instant."""
        if self.at is None:
            # In UTC: aware arithmetic in a local zone would add wall-clock hours.
            return anchor_at.astimezone(UTC) + self.offset
        local = anchor_at.astimezone(zone)
        days, remainder = _calendar(self.offset)
        # Calendar days in the zone, then wall-clock time there; any sub-day
        # offset is applied to the anchor before the date is taken.
        day = ((local + remainder) if remainder else local).date() + days
        return _wall_instant(day, self.at, zone)


def local_time_of(date: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `date` in `zone`.

    A wall time that a spring-forward gap skips is moved forward by the gap;
    a repeated one (fall back) takes its first occurrence.
    """
    # fold=0 reads a skipped wall time with the offset before the gap, which
    # lands it after the gap by the gap's length (02:30 becomes 03:30).
    return datetime.combine(date, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


@lru_cache(maxsize=256)
def _calendar(offset: timedelta) -> tuple[timedelta, timedelta]:
    """An offset as whole calendar days and the rest, both with its sign (-36h: -1d, -12h)."""
    days = offset.days if offset >= timedelta(0) else -((-offset).days)
    return timedelta(days=days), offset - timedelta(days=days)


# Wall-clock times repeat across patients (every reminder "at 10:00" on a
# given day in a zone): the zone's rules are read once per day, time and zone.
_wall_instant = lru_cache(maxsize=4096)(local_time_of)


def _format_duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    parts = []
    for unit, size in (("d", 1440), ("h", 60), ("m", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0m"


def parse_timing(text: str) -> Timing:
    """Parse a timing expression.

    Raises:
        ValueError: naming the expected form.
    """
    match = _TIMING.match(text)
    expected = (
        'expected a timing such as "appointment.start - 72h" or "stage.entered + 1d at 10:00"'
    )
    if match is None:
        raise ValueError(f'{expected}, got "{text}"')
    try:
        anchor = Anchor(match["anchor"])
    except ValueError:
        names = ", ".join(a.value for a in Anchor)
        raise ValueError(f'unknown anchor "{match["anchor"]}"; expected one of {names}') from None
    offset = timedelta(0)
    if match["duration"]:
        offset = parse_duration(match["duration"])
        if match["sign"] == "-":
            offset = -offset
    at = parse_local_time(match["at"]) if match["at"] else None
    return Timing(anchor=anchor, offset=offset, at=at)
