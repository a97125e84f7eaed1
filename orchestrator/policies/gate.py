"""The send-time gate: every policy, in order, for one due message.

Staleness first (a message past its limit, its expiry or else the default
limit after it was due, is never sent: expired, reason `stale`), then the
message's holdout group (suppressed with reason `holdout`), then consent and
contact points (which channels are usable at all), then quiet hours and the
send window (defer, or expire if the next allowed instant reaches the
staleness limit), then frequency caps (per channel, falling back to the next
usable one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..event import Channel
from ..flows.model import Flow
from ..journey import ScheduledMessage
from ..recipients import Contact, choose_language
from .consent import ConsentRecord, contactable
from .frequency_cap import within_cap
from .holdout import held_out
from .quiet_hours import next_allowed
from .staleness import DEFAULT_STALE_AFTER, stale_at

__all__ = ["Defer", "Expire", "Send", "SendContext", "Suppress", "Verdict", "decide"]


@dataclass(frozen=True, slots=True)
class Send:
    channel: Channel
    language: str
    language_fallback: bool = False


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Suppress:
    reason: str


@dataclass(frozen=True, slots=True)
class Expire:
    reason: str


Verdict = Send | Defer | Suppress | Expire


@dataclass(frozen=True, slots=True)
class SendContext:
    """What the gate needs to know about the recipient at send time."""

    contact: Contact | None
    consent: Mapping[Channel, ConsentRecord] = field(default_factory=dict)
    sent_at: Mapping[Channel, Sequence[datetime]] = field(default_factory=dict)


def decide(
    message: ScheduledMessage,
    flow: Flow,
    context: SendContext,
    now: datetime,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> Verdict:
    """Whether, how and when a due message may go out at `now`.

    `stale_after` is the default staleness limit, for a message whose flow
    gives it no expiry.
    """
    limit = stale_at(message, stale_after)
    if now >= limit:
        return Expire("stale")
    found = flow.specs.get(message.message_id)
    if found is not None and held_out(
        message.recipient.patient_id, flow.id, message.message_id, found[1].holdout
    ):
        return Suppress("holdout")
    contact = context.contact
    if contact is None:
        return Suppress("no_recipient")
    channels, why_not = contactable(message.channels, contact, context.consent)
    if not channels:
        return Suppress(why_not or "no_contact_point")
    zone = ZoneInfo(contact.timezone or message.timezone)
    allowed = next_allowed(now, zone, flow.quiet_hours, message.window)
    if allowed > now:
        in_quiet = flow.quiet_hours.contains(now.astimezone(zone).time())
        reason = "quiet_hours" if in_quiet else "send_window"
        if allowed >= limit:
            return Expire(reason)
        return Defer(allowed, reason)
    language, fallback = choose_language(contact.language, flow)
    for channel in channels:
        if message.essential or within_cap(
            context.sent_at.get(channel, ()), now, flow.frequency_caps.get(channel)
        ):
            return Send(channel, language, fallback)
    return Suppress("frequency_cap")
