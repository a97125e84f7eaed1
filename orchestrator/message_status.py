"""A scheduled message's status, and every move between statuses, in one place.

The machine, as the store and the simulator run it ("new": no row yet)::

    new ────────> scheduled    the engine schedules a message
    new ────────> expired      ...that was pointless when decided
    scheduled ──> claimed      a dispatcher claims it, due
    scheduled ──> cancelled    an event cancels it
    claimed ────> sending      its send begins (an attempt is numbered)
    claimed ────> scheduled    the gate defers it
    claimed ────> cancelled    an event cancels it before its send begins
    sending ────> claimed      a channel refused it (the next may take it), or
                               the provider says an interrupted send never arrived
    sending ────> scheduled    a transient error: retried later
    claimed ┐
    sending ┴──> sent | suppressed | expired | failed    the outcome
    sent ───────> delivered | failed                     provider feedback

Two rules this file keeps:

1. Only `scheduled` and `claimed` can be cancelled by an event: a message
   being sent (`sending`) has left, and its outcome belongs to the provider.
2. Nothing leaves a final status, except `sent`, which provider feedback
   moves to `delivered` or `failed`. So the audit never says "cancelled",
   "suppressed" or "expired" of a message that was sent, and a late or
   repeated callback moves nothing.

A status that stays is not a move: a pending message updated by a later
event (its expiry moved), a lease renewed or taken over from a claimer that
died (a `sending` message stays `sending`: its outcome is unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "FINAL",
    "FINAL_FROM_HELD",
    "IN_FLIGHT",
    "PENDING",
    "SETTLED",
    "MessageStatus",
    "allowed",
    "check_finish",
    "sources",
]


class MessageStatus(StrEnum):
    """Where a scheduled message is; the value is what the store and the audit keep."""

    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_S = MessageStatus
# Statuses an event can still change (cancel or update); everything else is final.
PENDING = (_S.SCHEDULED, _S.CLAIMED)
# Statuses held by a dispatcher's claim (a lease).
IN_FLIGHT = (_S.CLAIMED, _S.SENDING)
# Statuses the engine can no longer change.
FINAL = (_S.SENT, _S.DELIVERED, _S.FAILED, _S.SUPPRESSED, _S.CANCELLED, _S.EXPIRED)
# Final statuses nothing moves any more (`sent` still hears from its provider).
SETTLED = (_S.DELIVERED, _S.FAILED, _S.SUPPRESSED, _S.CANCELLED, _S.EXPIRED)

_MOVES: Mapping[MessageStatus | None, frozenset[MessageStatus]] = {
    # The engine: a new message is scheduled, or recorded expired when it was
    # pointless as decided (its appointment is over).
    None: frozenset({_S.SCHEDULED, _S.EXPIRED}),
    _S.SCHEDULED: frozenset({_S.CLAIMED, _S.CANCELLED}),
    # A claimed message is decided by the gate; a send marks it `sending` first
    # (the store also accepts it finished as `sent` from `claimed`).
    _S.CLAIMED: frozenset(
        {_S.SENDING, _S.SCHEDULED, _S.CANCELLED, _S.SENT, _S.SUPPRESSED, _S.EXPIRED, _S.FAILED}
    ),
    # Back to `claimed` when a channel refused it (the next may take it) or the
    # provider confirms it never arrived; `scheduled` for a retry.
    _S.SENDING: frozenset(
        {_S.CLAIMED, _S.SCHEDULED, _S.SENT, _S.SUPPRESSED, _S.EXPIRED, _S.FAILED}
    ),
    _S.SENT: frozenset({_S.DELIVERED, _S.FAILED}),
    **{status: frozenset[MessageStatus]() for status in SETTLED},
}


def allowed(current: MessageStatus | None, new: MessageStatus) -> bool:
    """Whether a message in `current` (None: not stored yet) may move to `new`."""
    return new in _MOVES[current]


def sources(new: MessageStatus) -> tuple[MessageStatus, ...]:
    """The stored statuses a message may move to `new` from, in declaration order.

    What a conditional update's where-clause checks, so a row that moved
    meanwhile (cancelled, claimed by another) is left alone.
    """
    return tuple(status for status in MessageStatus if allowed(status, new))


# The final statuses a dispatcher may finish a message it holds with, whether
# claimed or mid-send: what both stores' `finish` accept.
FINAL_FROM_HELD = tuple(status for status in FINAL if all(allowed(h, status) for h in IN_FLIGHT))


def check_finish(status: MessageStatus) -> None:
    """Raise `ValueError` unless a held message may be finished with `status`.

    A caller's mistake, not bad data: `reschedule`, `unsend` and `hold` make
    the other moves. Both stores' `finish` call it.
    """
    if status not in FINAL_FROM_HELD:
        raise ValueError(
            f"finish: a held message cannot move to {status!r}; "
            f"expected one of {', '.join(FINAL_FROM_HELD)}"
        )
