"""Consent per recipient and channel, and the choice of channel it leaves.

Treatment communications are allowed until the recipient opts out of a
channel (or of all of them); the latest decision, by when it was made, wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..event import Channel
from ..recipients import Contact

__all__ = ["ConsentRecord", "contactable", "may_contact", "ordered_channels"]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    channel: Channel
    granted: bool
    at: datetime
    source: str


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
