"""Frequency caps: at most N messages per recipient and channel in a rolling window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..flows.model import FrequencyCap

__all__ = ["within_cap"]


def within_cap(sent_at: Sequence[datetime], now: datetime, cap: FrequencyCap | None) -> bool:
    """Whether one more message at `now` stays within `cap`, given earlier sends."""
    if cap is None:
        return True
    since = now - cap.per
    recent = sum(1 for t in sent_at if since < t <= now)
    return recent < cap.limit
