"""Time, injected: the `Clock` seam, the system clock and a virtual clock.

`SystemClock.now` is the only place the orchestrator reads the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that moves only when told to; it never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += by
        return self._now

    def move_to(self, instant: datetime) -> datetime:
        """Move forward to `instant`; an earlier instant leaves the clock where it is."""
        self._now = max(self._now, instant.astimezone(UTC))
        return self._now
