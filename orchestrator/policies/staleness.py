"""Staleness: a message past its expiry (a reminder once the visit started) is never sent."""

from __future__ import annotations

from datetime import datetime

from ..journey import ScheduledMessage

__all__ = ["is_stale"]


def is_stale(message: ScheduledMessage, now: datetime) -> bool:
    return message.expires_at is not None and now >= message.expires_at
