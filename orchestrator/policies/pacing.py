"""Pacing: sends to a provider at the rate its sender takes them, as a token bucket.

A US long code sends one SMS segment a second; a short code or a messaging
service pool more. What a provider is handed faster waits in the sender's
queue there, goes stale in it, or overflows it. So each (sender, channel)
has a bucket of `burst` tokens refilled at `rate` a second; a send costs its
SMS segments (one for an email).

A send goes only on tokens the bucket holds when it is decided (`taken`), so
what a sender is handed never passes `burst` plus `rate` a second, even from
a dispatcher that fell behind. One that finds none is held, and told when to
come back: behind every send held before it (`queued_until`, the instant
by which the bucket will have paid for them all), so a thousand messages
due at once are each given their own instant instead of all asking again at
every refill. A held send that comes back (`returning`) takes the tokens
there are, ahead of new sends; if there are too few (its dispatcher was
late), it is held again for the soonest refill. A send that could only go
at or after its `deadline` (its staleness limit) takes nothing and holds no
place: it is not sent late.

Two rules keep the bucket honest when the world is not:

- Places are given back. A bucket that refilled to its burst has had no
  taker for a burst's worth of tokens: the sends held before are gone
  (cancelled, suppressed, deferred, expired), or will find tokens there
  anyway. Its queue is forgotten, so a new send does not wait behind
  places nobody will take.
- A clock behind the bucket by up to `CLOCK_TOLERANCE` (another process's,
  a little ahead) reads the bucket at the bucket's instant; one behind by
  more resets the bucket to its own `now` (`Taken.reset` says by how much)
  rather than let a process whose clock is far ahead hold everyone's sends.

Instants are rounded up to the microsecond, and tokens compared within
`_SLACK`, so a send told to come back at an instant finds its tokens then.

The math is here, pure, with `now` given; the store keeps each bucket
(`ports.SendBuckets`) and runs `take` under its row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CLOCK_TOLERANCE", "PACED", "Ask", "Bucket", "Pace", "Taken", "take", "take_all"]

# The reason of a message held for its sender's tokens: when it comes back it
# takes them ahead of new sends.
PACED = "paced"
# How far ahead of a taker's clock a bucket may have been written (another
# process's clock) and still be read at its own instant.
CLOCK_TOLERANCE = timedelta(seconds=5)
# Tokens within this of a send's cost pay for it: float noise, never a token.
_SLACK = 1e-6


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
    """What one send was told.

    `taken`: its tokens are taken, it goes now. Else `ready_at` is when to
    come back (held), or None: not before its deadline (nothing taken, no
    place held). `reset`: how far ahead of this clock the bucket had been
    written when this take reset it (None: it was not).
    """

    taken: bool
    ready_at: datetime | None
    reset: timedelta | None = None


def take(
    bucket: Bucket | None,
    pace: Pace,
    ask: Ask,
    now: datetime,
    *,
    ahead: float = 0.0,
) -> tuple[Bucket, Taken]:
    """One send's take at `now`: the bucket after, and what the send was told.

    It goes at once (`taken`, its cost taken) when the bucket holds its cost
    (for a send dearer than the burst, a full bucket) and, unless it is
    `returning`, no held send is queued before it. Else it is held: a new
    send behind the queue, which it joins; a returning one for the soonest
    refill, after `ahead` tokens others returning with it wait for. Told
    None, the bucket unchanged, when that is at or past its deadline.
    """
    reset: timedelta | None = None
    if bucket is None:
        bucket = Bucket(pace.burst, now)
    elif bucket.updated_at - now > CLOCK_TOLERANCE:
        # Written by a clock far ahead of this one: read from here, places forgotten.
        reset = bucket.updated_at - now
        bucket = Bucket(min(bucket.tokens, pace.burst), now)
    # Another process's clock may be a little behind: the bucket never goes back.
    now = max(now, bucket.updated_at)
    elapsed = (now - bucket.updated_at).total_seconds()
    tokens = min(pace.burst, bucket.tokens + elapsed * pace.rate)
    need = min(ask.cost, pace.burst)
    queued = bucket.queued_until if bucket.queued_until and bucket.queued_until > now else None
    if tokens >= pace.burst - _SLACK:
        queued = None  # full: nobody is taking the tokens the held sends were promised
    refilled = Bucket(tokens, now, queued)
    if tokens >= need - _SLACK and (ask.returning or queued is None):
        return Bucket(tokens - ask.cost, now, queued), Taken(True, now, reset)
    if ask.returning:
        ready_at = _after(now, (need + ahead - tokens) / pace.rate)
        if ask.deadline is not None and ready_at >= ask.deadline:
            return refilled, Taken(False, None, reset)
        # New sends queue behind it too.
        until = ready_at if queued is None else max(queued, ready_at)
        return Bucket(tokens, now, until), Taken(False, ready_at, reset)
    if queued is not None:
        # Behind the queue: the tokens there are, and those to come until it is
        # paid for, are the held sends'.
        ready_at = _after(queued, need / pace.rate)
    else:
        ready_at = _after(now, (need - tokens) / pace.rate)
    if ask.deadline is not None and ready_at >= ask.deadline:
        return refilled, Taken(False, None, reset)
    until = _after(ready_at, (ask.cost - need) / pace.rate)
    return Bucket(tokens, now, until), Taken(False, ready_at, reset)


def take_all(
    bucket: Bucket | None, pace: Pace, asks: Sequence[Ask], now: datetime
) -> tuple[Bucket | None, list[Taken]]:
    """`take` for each ask in order; returning sends held again are spread, not bunched."""
    told: list[Taken] = []
    ahead = 0.0
    for ask in asks:
        bucket, taken = take(bucket, pace, ask, now, ahead=ahead)
        if ask.returning and not taken.taken and taken.ready_at is not None:
            ahead += ask.cost
        told.append(taken)
    return bucket, told


def _after(start: datetime, seconds: float) -> datetime:
    """`seconds` after `start`, rounded up to the microsecond (float noise aside)."""
    if seconds <= 0:
        return start
    micros = -int(-(seconds * 1e6 - 1e-3) // 1)  # the ceiling, float noise aside
    return start + timedelta(microseconds=max(micros, 1))
