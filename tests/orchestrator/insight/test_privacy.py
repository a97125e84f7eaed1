"""Complementary suppression: no hidden count of an additive group comes back by subtraction."""

from __future__ import annotations

import pytest

from orchestrator.insight import complementary, shown_group


def test_one_hidden_part_hides_the_smallest_other_non_zero_part() -> None:
    # entered = moved_on + dropped_off + completed + still_here: 25 = 20 + <11 + 0 + 0
    # would give the 5 back. The shown 0s are subtracted too, so they do not protect it.
    assert shown_group(25, (20, 5, 0, 0)) == ("25", ("<11", "<11", "0", "0"))
    assert shown_group(57, (20, 5, 0, 32)) == ("57", ("<11", "<11", "0", "32"))
    assert complementary(14, (0, 3, 0, 0, 11)) == (False, (False, True, False, False, True))


def test_a_lone_non_zero_part_is_hidden_with_its_total_or_not_at_all() -> None:
    # In an additive group a lone non-zero part equals its total: both shown, or both
    # hidden already (two hidden cells), never one alone.
    assert shown_group(15, (0, 15, 0)) == ("15", ("0", "15", "0"))
    assert complementary(7, (0, 7, 0)) == (True, (False, True, False))


def test_with_no_other_non_zero_part_the_total_is_hidden() -> None:
    # Only a group whose parts do not add up reaches this branch; it hides the total.
    assert complementary(30, (0, 7, 0)) == (True, (False, True, False))


@pytest.mark.parametrize(
    "parts",
    [(20, 30, 0, 11), (0, 0, 0, 0), (11, 0, 0, 0)],
)
def test_nothing_hidden_stays_unchanged(parts: tuple[int, ...]) -> None:
    total = sum(parts)
    assert shown_group(total, parts) == (str(total), tuple(str(p) for p in parts))


def test_two_hidden_cells_stay_as_they_are() -> None:
    assert complementary(30, (20, 3, 4, 3)) == (False, (False, True, True, True))
    assert shown_group(28, (20, 3, 5, 0)) == ("28", ("20", "<11", "<11", "0"))


def test_no_single_hidden_cell_can_be_subtracted_back() -> None:
    for a in range(0, 25):
        for b in range(0, 25):
            for c in range(0, 25):
                total_hidden, flags = complementary(a + b + c, (a, b, c))
                assert total_hidden + sum(flags) != 1, (a, b, c)
