"""p50 and p95 of a benchmark's timings, one definition for every bench that prints them."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentiles(times: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 of `times` (seconds) in milliseconds, by nearest rank.

    The p-th percentile is the smallest timing at least p% of the timings are
    at or below (the ceil(p * n)-th in order): always a timing that was taken,
    defined for a single one, and of 5 runs the p95 is the worst.
    """
    if not times:
        raise ValueError("no timings")
    ordered = sorted(times)

    def rank(p: float) -> float:
        return ordered[max(1, math.ceil(p * len(ordered))) - 1] * 1000

    return rank(0.50), rank(0.95)
