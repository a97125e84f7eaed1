"""Staleness: a message is never sent more than its limit after it was due.

The limit is the message's own expiry where its flow gives one (`expires`,
or the appointment start for a reminder timed before it); otherwise the
default limit the runtime is configured with, counted from the instant the
engine made it due. Deferrals and retries move when a message is looked at
again, never the instant it was due, so they cannot stretch its limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..journey import ScheduledMessage

__all__ = ["DEFAULT_STALE_AFTER", "is_stale", "stale_at"]

# A day: a follow-up or a survey read a day late still reads right, a night of
# quiet hours (and the retries around it) fits inside it, and a dispatcher or
# provider outage shorter than a day still delivers.
DEFAULT_STALE_AFTER = timedelta(hours=24)


def stale_at(message: ScheduledMessage, default: timedelta) -> datetime:
    """The instant from which `message` must not be sent: its expiry, else due + `default`."""
    if message.expires_at is not None:
        return message.expires_at
    return message.due_at + default


def is_stale(message: ScheduledMessage, now: datetime, default: timedelta) -> bool:
    """Whether `message` is past its staleness limit at `now`."""
    return now >= stale_at(message, default)
