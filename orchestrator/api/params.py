"""What a path or query parameter may hold: text the store can look up, instants it can compare.

A parameter is input like a body: one the store cannot hold (a NUL, a lone
surrogate) or compare (a time that overflows in UTC) is refused here with
422, not met as a driver error behind a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator

from ..event_schema import AwareDatetime
from ..limits import time_problem, unsafe_text

__all__ = ["Instant", "StorableText"]


def _storable(value: str) -> str:
    problem = unsafe_text(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _comparable(moment: datetime) -> datetime:
    problem = time_problem(moment)
    if problem is not None:
        raise ValueError(problem)
    return moment


StorableText = Annotated[str, AfterValidator(_storable)]
# ISO 8601 with an offset, as an event's times, in UTC (`AwareDatetime`); then in range.
Instant = Annotated[AwareDatetime, AfterValidator(_comparable)]
