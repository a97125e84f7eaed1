"""The token bucket's math: sends at the rate after the burst, reserved, never past a deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.policies.pacing import CLOCK_TOLERANCE, Ask, Bucket, Pace, Taken, take, take_all

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def seconds(instant: datetime | None) -> float | None:
    return None if instant is None else (instant - T0).total_seconds()


def told(taken: Taken, now: datetime = T0) -> float | None:
    """When a send may go, in seconds from T0: `now` when its tokens were taken."""
    assert not (taken.taken and taken.ready_at is None)
    return seconds(now) if taken.taken else seconds(taken.ready_at)


def takes(pace: Pace, costs: list[float], now: datetime = T0) -> list[float | None]:
    bucket: Bucket | None = None
    ready: list[float | None] = []
    for cost in costs:
        bucket, taken = take(bucket, pace, Ask(cost), now)
        ready.append(told(taken, now))
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
        assert taken.taken is (expected == 0.0)


def test_a_send_that_could_only_go_at_its_deadline_takes_nothing() -> None:
    pace = Pace(rate=1, burst=1)
    bucket, _ = take(None, pace, Ask(1), T0)
    after, taken = take(bucket, pace, Ask(1, T0 + timedelta(seconds=1)), T0)
    assert taken == Taken(False, None)
    assert after.tokens == 0  # nothing taken: the next send is not pushed back
    _, taken = take(after, pace, Ask(1, T0 + timedelta(seconds=2)), T0)
    assert seconds(taken.ready_at) == 1.0


def test_a_clock_a_little_behind_the_bucket_reads_it_at_its_instant_and_takes_its_tokens() -> None:
    pace = Pace(rate=2, burst=2)
    ahead = T0 + timedelta(milliseconds=10)  # another dispatcher's clock
    bucket, first = take(None, pace, Ask(1), ahead)
    bucket, second = take(bucket, pace, Ask(1), T0)
    assert first.taken and second.taken  # the bucket had a token for it: it goes
    assert bucket.updated_at == ahead and bucket.tokens == 0  # never moved back
    bucket, third = take(bucket, pace, Ask(1), T0)
    assert not third.taken and seconds(third.ready_at) == 0.51


def test_a_bucket_written_by_a_clock_far_ahead_is_reset_to_this_one() -> None:
    # A process whose clock is a day ahead must not hold every other process's sends a day.
    pace = Pace(rate=100, burst=100)
    bucket, _ = take_all(None, pace, [Ask(1)] * 150, T0 + timedelta(days=1))
    assert bucket is not None and bucket.queued_until is not None
    deadline = T0 + timedelta(hours=1)
    bucket, answers = take_all(bucket, pace, [Ask(1, deadline)] * 3, T0)
    assert [a.taken for a in answers] == [False, False, False]  # the bucket was empty
    assert [seconds(a.ready_at) for a in answers] == [0.01, 0.02, 0.03]
    assert answers[0].reset == timedelta(days=1)
    assert bucket is not None and bucket.updated_at == T0
    # Within the tolerance the bucket is read as it is: no reset.
    _, (near,) = take_all(Bucket(1, T0 + CLOCK_TOLERANCE), pace, [Ask(1)], T0)
    assert near.taken and near.reset is None


def test_a_full_bucket_gives_back_the_places_of_held_sends_that_never_came() -> None:
    pace = Pace(rate=1, burst=1)
    bucket, answers = take_all(None, pace, [Ask(1)] * 10, T0)
    assert [told(a) for a in answers] == [float(i) for i in range(10)]
    # The nine held are cancelled: none comes back. At +2 s the bucket is full again.
    later = T0 + timedelta(seconds=2)
    assert bucket is not None
    bucket, taken = take(bucket, pace, Ask(1, T0 + timedelta(seconds=5)), later)
    assert taken.taken
    assert bucket.queued_until is None and bucket.tokens == 0


def test_a_bucket_not_yet_full_keeps_the_places_of_the_held_sends() -> None:
    pace = Pace(rate=1, burst=2)
    bucket, _ = take_all(None, pace, [Ask(1)] * 5, T0)  # two go; held for 1, 2, 3
    assert bucket is not None
    _, taken = take(bucket, pace, Ask(1), T0 + timedelta(seconds=1.5))
    assert not taken.taken and seconds(taken.ready_at) == 4.0


@pytest.mark.parametrize("rate", [0.3, 1 / 60, 2.0, 3.0, 7.0, 33.0])
def test_a_send_told_an_instant_finds_its_tokens_then(rate: float) -> None:
    # Rounded to the microsecond, an instant a hair early would find a hair too
    # few tokens: a send told "go" must always have had its tokens taken.
    pace = Pace(rate=rate, burst=1)
    bucket, answers = take_all(None, pace, [Ask(1)] * 7, T0)
    for answer in answers[1:]:
        assert not answer.taken and answer.ready_at is not None
        assert bucket is not None
        before = bucket
        bucket, back = take(bucket, pace, Ask(1, returning=True), answer.ready_at)
        assert back.taken
        refilled = before.tokens + (answer.ready_at - before.updated_at).total_seconds() * rate
        assert bucket.tokens == pytest.approx(min(1.0, refilled) - 1, abs=1e-5)


def test_held_sends_come_back_to_their_tokens_ahead_of_new_ones() -> None:
    pace = Pace(rate=2, burst=2)
    bucket, ready = take_all(None, pace, [Ask(1)] * 4, T0)
    assert [told(r) for r in ready] == [0.0, 0.0, 0.5, 1.0]
    half = T0 + timedelta(seconds=0.5)
    # A new send at 0.5 queues behind the held ones; the one held for 0.5 goes.
    bucket, ready = take_all(bucket, pace, [Ask(1), Ask(1, returning=True)], half)
    assert [told(r, half) for r in ready] == [1.5, 0.5]


def test_sends_come_back_late_go_only_on_the_tokens_there_are_and_the_rest_are_spread() -> None:
    pace = Pace(rate=2, burst=2)
    bucket, _ = take_all(None, pace, [Ask(1)] * 10, T0)
    late = T0 + timedelta(seconds=3)  # the dispatcher was away: eight come back at once
    _, ready = take_all(bucket, pace, [Ask(1, returning=True)] * 8, late)
    assert [told(r, late) for r in ready] == [3.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_a_pace_without_a_positive_rate_and_a_whole_burst_is_refused(
    rate: float, burst: float
) -> None:
    with pytest.raises(ValueError, match="pace"):
        Pace(rate, burst)
