"""Pacing: sends to a provider at the rate its sender takes them, as a token bucket.

A US long code sends one SMS segment a second; a short code or a messaging
service pool more. What a provider is handed faster waits in the sender's
queue there, goes stale in it, or overflows it. So each (sender, channel)
has a bucket of `burst` tokens refilled at `rate` a second; a send costs its
SMS segments (one for an email).

A send goes only on tokens the bucket holds when it is decided, so what a
sender is handed never passes `burst` plus `rate` a second, even from a
dispatcher that fell behind. One that finds none is held, and told when to
come back: behind every send held before it (`queued_until`, the instant
by which the bucket will have paid for them all), so a thousand messages
due at once are each given their own instant instead of all asking again at
every refill. A held send that comes back (`returning`) takes the tokens
there are, ahead of new sends; if there are too few (its dispatcher was
late), it is held again for the soonest refill. A send that could only go
at or after its `deadline` (its staleness limit) takes nothing and holds no
place: it is not sent late.

The math is here, pure, with `now` given; the store keeps each bucket
(`ports.SendBuckets`) and runs `take` under its row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Ask", "Bucket", "Pace", "Taken", "take", "take_all"]


@dataclass(frozen=True, slots=True)
class Pace:
    """A sender's rate (tokens a second) and burst (the bucket's capacity, in tokens)."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError(
                f"pace: expected rate > 0 and burst >= 1, got {self.rate}, {self.burst}"
            )


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tokens left at `updated_at`, and until when the sends held so far are queued."""

    tokens: float
    updated_at: datetime
    queued_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ask:
    """One send's request: its cost, its deadline, and whether it was held before."""

    cost: float
    deadline: datetime | None = None
    returning: bool = False


@dataclass(frozen=True, slots=True)
class Taken:
    """What one send was told: when it may go (None: not before its deadline; nothing taken)."""

    ready_at: datetime | None


def take(
    bucket: Bucket | None,
    pace: Pace,
    ask: Ask,
    now: datetime,
    *,
    ahead: float = 0.0,
) -> tuple[Bucket, Taken]:
    """One send's take at `now`: the bucket after, and when the send may go.

    It goes at once (`ready_at` is `now`, its cost taken) when the bucket
    holds its cost (for a send dearer than the burst, a full bucket) and,
    unless it is `returning`, no held send is queued before it. Else it is
    held: a new send behind the queue, which it joins; a returning one for
    the soonest refill, after `ahead` tokens others returning with it wait
    for. None, and the bucket unchanged, when that is at or past its deadline.
    """
    if bucket is None:
        bucket = Bucket(pace.burst, now)
    # Another process's clock may be a little behind: the bucket never goes back.
    now = max(now, bucket.updated_at)
    elapsed = (now - bucket.updated_at).total_seconds()
    tokens = min(pace.burst, bucket.tokens + elapsed * pace.rate)
    queued = bucket.queued_until if bucket.queued_until and bucket.queued_until > now else None
    need = min(ask.cost, pace.burst)
    refilled = Bucket(tokens, now, queued)
    if tokens >= need and (ask.returning or queued is None):
        return Bucket(tokens - ask.cost, now, queued), Taken(now)
    if ask.returning:
        wait = (need + ahead - tokens) / pace.rate
        ready_at = now + timedelta(seconds=max(wait, 0.0))
        if ask.deadline is not None and ready_at >= ask.deadline:
            return refilled, Taken(None)
        return refilled, Taken(ready_at)
    if queued is not None:
        # Behind the queue: the tokens there are, and those to come until it is
        # paid for, are the held sends'.
        ready_at = queued + timedelta(seconds=need / pace.rate)
    else:
        ready_at = now + timedelta(seconds=max(0.0, (need - tokens) / pace.rate))
    if ask.deadline is not None and ready_at >= ask.deadline:
        return refilled, Taken(None)
    until = ready_at + timedelta(seconds=(ask.cost - need) / pace.rate)
    return Bucket(tokens, now, until), Taken(ready_at)


def take_all(
    bucket: Bucket | None, pace: Pace, asks: Sequence[Ask], now: datetime
) -> tuple[Bucket | None, list[datetime | None]]:
    """`take` for each ask in order; returning sends held again are spread, not bunched."""
    ready: list[datetime | None] = []
    ahead = 0.0
    for ask in asks:
        bucket, taken = take(bucket, pace, ask, now, ahead=ahead)
        if ask.returning and taken.ready_at is not None and taken.ready_at > now:
            ahead += ask.cost
        ready.append(taken.ready_at)
    return bucket, ready
