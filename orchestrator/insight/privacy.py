"""The small-count rule for aggregate pages: a count from 1 to 10 is shown as "<11".

A count that small can point at a person (one no-show in a small clinic on
one day). Zero is shown: it points at nobody. A rate is shown only when its
numerator and its denominator could both be shown as numbers, so a small
count cannot be worked back out of it.
"""

from __future__ import annotations

__all__ = ["SMALL", "hidden", "shown", "shown_rate"]

# Counts below this are not shown.
SMALL = 11


def hidden(count: int) -> bool:
    """Whether a count must not be shown as it is."""
    return 0 < count < SMALL


def shown(count: int) -> str:
    return "<11" if hidden(count) else str(count)


def shown_rate(numerator: int, denominator: int) -> str:
    """A percentage with no decimals, or "<11" / "-" when it cannot be shown."""
    if denominator == 0:
        return "-"
    if hidden(numerator) or hidden(denominator) or hidden(denominator - numerator):
        return "<11"
    return f"{100 * numerator / denominator:.0f}%"
