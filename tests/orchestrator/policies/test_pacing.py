"""The token bucket's math: sends at the rate after the burst, reserved, never past a deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.policies.pacing import Ask, Bucket, Pace, take, take_all

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def seconds(instant: datetime | None) -> float | None:
    return None if instant is None else (instant - T0).total_seconds()


def takes(pace: Pace, costs: list[float], now: datetime = T0) -> list[float | None]:
    bucket: Bucket | None = None
    ready: list[float | None] = []
    for cost in costs:
        bucket, taken = take(bucket, pace, Ask(cost), now)
        ready.append(seconds(taken.ready_at))
    return ready


def test_ten_sends_at_once_go_two_at_once_then_one_every_half_second() -> None:
    assert takes(Pace(rate=2, burst=2), [1] * 10) == [
        0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0
    ]  # fmt: skip


def test_a_two_segment_sms_takes_two_tokens() -> None:
    assert takes(Pace(rate=1, burst=2), [2, 2, 1]) == [0.0, 2.0, 3.0]


def test_a_send_dearer_than_the_burst_goes_on_a_full_bucket_and_the_next_pays_for_it() -> None:
    assert takes(Pace(rate=1, burst=1), [3, 1]) == [0.0, 3.0]


def test_an_idle_bucket_refills_to_its_burst_and_no_more() -> None:
    pace = Pace(rate=2, burst=2)
    bucket, _ = take(None, pace, Ask(2), T0)
    later = T0 + timedelta(hours=1)
    for expected in (0.0, 0.0, 0.5):
        bucket, taken = take(bucket, pace, Ask(1), later)
        assert (taken.ready_at - later).total_seconds() == expected  # type: ignore[operator]


def test_a_send_that_could_only_go_at_its_deadline_takes_nothing() -> None:
    pace = Pace(rate=1, burst=1)
    bucket, _ = take(None, pace, Ask(1), T0)
    after, taken = take(bucket, pace, Ask(1, T0 + timedelta(seconds=1)), T0)
    assert taken.ready_at is None
    assert after.tokens == 0  # nothing taken: the next send is not pushed back
    _, taken = take(after, pace, Ask(1, T0 + timedelta(seconds=2)), T0)
    assert seconds(taken.ready_at) == 1.0


def test_a_clock_behind_the_bucket_never_moves_it_back() -> None:
    pace = Pace(rate=1, burst=1)
    bucket, _ = take(None, pace, Ask(1), T0 + timedelta(seconds=10))
    bucket, taken = take(bucket, pace, Ask(1), T0)
    assert seconds(taken.ready_at) == 11.0
    assert bucket.updated_at == T0 + timedelta(seconds=10)


def test_held_sends_come_back_to_their_tokens_ahead_of_new_ones() -> None:
    pace = Pace(rate=2, burst=2)
    bucket, ready = take_all(None, pace, [Ask(1)] * 4, T0)
    assert [seconds(r) for r in ready] == [0.0, 0.0, 0.5, 1.0]
    half = T0 + timedelta(seconds=0.5)
    # A new send at 0.5 queues behind the held ones; the one held for 0.5 goes.
    bucket, ready = take_all(bucket, pace, [Ask(1), Ask(1, returning=True)], half)
    assert [seconds(r) for r in ready] == [1.5, 0.5]


def test_sends_come_back_late_go_only_on_the_tokens_there_are_and_the_rest_are_spread() -> None:
    pace = Pace(rate=2, burst=2)
    bucket, _ = take_all(None, pace, [Ask(1)] * 10, T0)
    late = T0 + timedelta(seconds=3)  # the dispatcher was away: eight come back at once
    _, ready = take_all(bucket, pace, [Ask(1, returning=True)] * 8, late)
    assert [seconds(r) for r in ready] == [3.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_a_pace_without_a_positive_rate_and_a_whole_burst_is_refused(
    rate: float, burst: float
) -> None:
    with pytest.raises(ValueError, match="pace"):
        Pace(rate, burst)
