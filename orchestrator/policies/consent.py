"""Consent per recipient and channel, and the choice of channel it leaves.

Treatment communications are allowed until the recipient opts out of a
channel (or of all of them); the latest decision, by when it was made, wins.
What a consent event decides is derived here, once, for every runtime and the
simulator; they keep the records where they keep state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..event import Channel, Event, EventType
from ..recipients import Contact

__all__ = [
    "ConsentRecord",
    "consent_decisions",
    "contactable",
    "may_contact",
    "ordered_channels",
    "supersedes",
]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    channel: Channel
    granted: bool
    at: datetime
    source: str


def consent_decisions(event: Event) -> tuple[tuple[str, ConsentRecord], ...]:
    """What a consent event decides: (recipient, record) per channel it names.

    The recipient is `caregiver:<id>` when the event names a `caregiver_id`,
    else `patient`; an event naming no known channel decides for every
    channel. Any other event decides nothing.
    """
    if event.type not in (EventType.CONSENT_OPTED_OUT, EventType.CONSENT_OPTED_IN):
        return ()
    caregiver = event.attributes.get("caregiver_id")
    recipient = f"caregiver:{caregiver}" if isinstance(caregiver, str) else "patient"
    named = event.attributes.get("channel")
    channels = [c for c in Channel if c.value == named] or list(Channel)
    granted = event.type is EventType.CONSENT_OPTED_IN
    return tuple(
        (recipient, ConsentRecord(channel, granted, event.occurred_at, event.source))
        for channel in channels
    )


def supersedes(record: ConsentRecord, previous_at: datetime | None) -> bool:
    """Whether `record` replaces a decision made at `previous_at` (None: there was none).

    The later decision wins, by when it was made, whatever order the events
    arrive in; of two made at the same instant, the one that arrived last.
    """
    return previous_at is None or previous_at <= record.at


def may_contact(consent: Mapping[Channel, ConsentRecord], channel: Channel) -> bool:
    record = consent.get(channel)
    return record is None or record.granted


def ordered_channels(channels: Sequence[Channel], contact: Contact) -> list[Channel]:
    """The message's channels, the recipient's preferred one first when it is among them."""
    ordered = list(channels)
    preferred = contact.preferred_channel
    if preferred is not None and preferred in ordered:
        ordered.remove(preferred)
        ordered.insert(0, preferred)
    return ordered


def contactable(
    channels: Sequence[Channel], contact: Contact, consent: Mapping[Channel, ConsentRecord]
) -> tuple[list[Channel], str | None]:
    """The channels that can be used, in order, and why the first choice could not.

    Returns the usable channels and, when none is usable, the reason
    (`consent` if the recipient opted out, else `no_contact_point`).
    """
    usable = [
        c
        for c in ordered_channels(channels, contact)
        if contact.address(c) and may_contact(consent, c)
    ]
    if usable:
        return usable, None
    opted_out = any(contact.address(c) and not may_contact(consent, c) for c in channels)
    return [], "consent" if opted_out else "no_contact_point"
