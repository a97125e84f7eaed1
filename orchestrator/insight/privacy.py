"""The small-count rule for aggregate pages: a count from 1 to 10 is shown as "<11".

A count that small can point at a person (one no-show in a small clinic on
one day). Zero is shown: it points at nobody. A rate is shown only when its
numerator and its denominator could both be shown as numbers, so a small
count cannot be worked back out of it.

Cells of an additive group (a total and its parts) are hidden together: with
exactly one hidden cell, subtracting the shown cells from the total would
give it back, so a second cell is hidden too (`complementary`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "HIDDEN",
    "SMALL",
    "complementary",
    "hidden",
    "rate_hidden",
    "shown",
    "shown_below",
    "shown_group",
    "shown_rate",
]

# Counts below this are not shown.
SMALL = 11
# What a hidden count is shown as.
HIDDEN = "<11"


def hidden(count: int) -> bool:
    """Whether a count must not be shown as it is."""
    return 0 < count < SMALL


def shown(count: int) -> str:
    return HIDDEN if hidden(count) else str(count)


def shown_below(threshold: int) -> Callable[[int], str]:
    """`shown` with another threshold (a pilot's, `ORCHESTRATOR_SMALL_COUNT_THRESHOLD`):
    a count from 1 to `threshold - 1` is shown as "<threshold"; 1 shows every count."""
    if threshold == SMALL:
        return shown
    return lambda count: f"<{threshold}" if 0 < count < threshold else str(count)


def rate_hidden(numerator: int, denominator: int, hide: Callable[[int], bool] = hidden) -> bool:
    """Whether a rate gives a hidden count away: its numerator, its denominator or
    their difference (95 of 100 gives the 5 away)."""
    return hide(numerator) or hide(denominator) or hide(denominator - numerator)


def shown_rate(numerator: int, denominator: int) -> str:
    """A percentage with no decimals, or "<11" / "-" when it cannot be shown."""
    if denominator == 0:
        return "-"
    if rate_hidden(numerator, denominator):
        return HIDDEN
    return f"{100 * numerator / denominator:.0f}%"


def complementary(
    total: int, parts: Sequence[int], hide: Callable[[int], bool] = hidden
) -> tuple[bool, tuple[bool, ...]]:
    """Which cells of an additive group (`total == sum(parts)`) to hide: (total, parts).

    A cell is hidden when `hide` says so. When exactly one cell is hidden, the
    smallest other non-zero part is hidden too, or the total when no other part
    is non-zero, so that no subtraction gives a hidden cell back. A shown 0
    counts as a shown cell (it is subtracted like any other) but is never the
    one hidden in addition: it points at nobody, and hiding it would not stop
    the subtraction when the other cells are shown.
    """
    total_hidden = hide(total)
    flags = [hide(part) for part in parts]
    if total_hidden + sum(flags) != 1:
        return total_hidden, tuple(flags)
    others = [(part, i) for i, part in enumerate(parts) if part and not flags[i]]
    if others:
        flags[min(others)[1]] = True
    else:
        total_hidden = True
    return total_hidden, tuple(flags)


def shown_group(total: int, parts: Sequence[int]) -> tuple[str, tuple[str, ...]]:
    """The texts of an additive group's cells under the small-count rule and `complementary`."""
    total_hidden, flags = complementary(total, parts)
    return (
        HIDDEN if total_hidden else str(total),
        tuple(HIDDEN if flag else str(part) for part, flag in zip(parts, flags, strict=True)),
    )
