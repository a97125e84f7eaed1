"""What a path or query parameter may hold: text the store can look up, instants it can compare.

A parameter is input like a body: one the store cannot hold (a NUL, a lone
surrogate) or compare (a time that overflows in UTC) is refused here with
422, not met as a driver error behind a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

from ..limits import EARLIEST, LATEST, unsafe_text

__all__ = ["Instant", "StorableText"]


def _storable(value: str) -> str:
    problem = unsafe_text(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _comparable(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-03-01T00:00:00Z")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("cannot be converted to UTC") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"outside {EARLIEST.year} to {LATEST.year - 1} (UTC)")
    return utc


StorableText = Annotated[str, AfterValidator(_storable)]
Instant = Annotated[datetime, AfterValidator(_comparable)]
