"""Pacing the dispatcher's sends to each sender's rate, through buckets in the store.

`plan_for(settings)` names the sender of each channel and its pace: the
Twilio messaging service or number for SMS, the SendGrid sender for email,
else `sandbox`. Its rate is `ORCHESTRATOR_SENDER_RATES[sender]`, else the
channel's setting (`ORCHESTRATOR_SMS_RATE`, `ORCHESTRATOR_EMAIL_RATE`), else
what such a sender takes: a US short code 100 segments a second, a toll-free
number 3, any other number or a messaging service 1 (one long code), a
SendGrid sender 100 emails a second. The sandbox is paced only when a rate
is set for it: a rehearsal then paces as the sender it stands for. The burst
is the setting, else one second of the rate.

`Pacer.admit` takes the tokens of a batch's sends from the store's shared
buckets (`ports.SendBuckets`), one take per bucket; the dispatcher holds
what must wait and expires what could only go stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..event import Channel
from ..policies.pacing import Ask, Pace
from ..ports import Outgoing, SendBuckets
from ..settings import Settings
from ..sms import segments

__all__ = ["SANDBOX", "Pacer", "PacingPlan", "Sender", "cost", "plan_for"]

SANDBOX = "sandbox"

# Twilio's default throughput per sender kind (segments a second).
_SHORT_CODE_RATE = 100.0
_TOLL_FREE_RATE = 3.0
_LONG_CODE_RATE = 1.0
_EMAIL_RATE = 100.0
_SHORT_CODE = re.compile(r"^\d{5,6}$")
_TOLL_FREE = re.compile(r"^\+18(00|33|44|55|66|77|88)\d{7}$")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a channel's sends go out as, and at what pace."""

    name: str
    pace: Pace


@dataclass(frozen=True, slots=True)
class PacingPlan:
    """The sender of each paced channel; a channel not listed is not paced."""

    senders: Mapping[Channel, Sender]


def cost(outgoing: Outgoing) -> float:
    """What a send takes from its bucket: its SMS segments, or one email."""
    return float(segments(outgoing.body)) if outgoing.channel is Channel.SMS else 1.0


@dataclass
class Pacer:
    """Takes tokens for sends from the store's buckets, by the plan."""

    buckets: SendBuckets
    plan: PacingPlan

    def admit(
        self, sends: Sequence[Outgoing], now: datetime, returning: frozenset[str] = frozenset()
    ) -> list[datetime | None]:
        """When each send may go (`now`: its tokens are taken), in order; None: only at or
        past its limit. A send whose key is in `returning` was held before.
        """
        ready: list[datetime | None] = [now] * len(sends)
        by_channel: dict[Channel, list[int]] = {}
        for index, outgoing in enumerate(sends):
            if outgoing.channel in self.plan.senders:
                by_channel.setdefault(outgoing.channel, []).append(index)
        for channel, indexes in by_channel.items():
            sender = self.plan.senders[channel]
            taken = self.buckets.take_tokens(
                sender.name,
                channel,
                sender.pace,
                [
                    Ask(cost(sends[i]), sends[i].valid_until, sends[i].key in returning)
                    for i in indexes
                ],
                now,
            )
            for index, at in zip(indexes, taken, strict=True):
                ready[index] = at
        return ready


def plan_for(settings: Settings) -> PacingPlan:
    """Each channel's sender and pace, from the settings (see the module's docstring)."""
    senders: dict[Channel, Sender] = {}
    sms = settings.twilio_messaging_service_sid or settings.twilio_from_number
    email = settings.sendgrid_sender
    for channel, name, rate, burst, default in (
        (Channel.SMS, sms, settings.sms_rate, settings.sms_burst, _sms_rate(sms)),
        (Channel.EMAIL, email, settings.email_rate, settings.email_burst, _EMAIL_RATE),
    ):
        name = name or SANDBOX
        override = settings.sender_rates.get(name)
        if override is not None:
            rate, burst = override.rate, override.burst or burst
        elif rate is None and name != SANDBOX:
            rate = default
        if rate is not None:
            senders[channel] = Sender(name, Pace(rate, burst or max(1.0, rate)))
    return PacingPlan(senders)


def _sms_rate(sender: str | None) -> float:
    if sender is None:
        return _LONG_CODE_RATE
    if _SHORT_CODE.match(sender):
        return _SHORT_CODE_RATE
    if _TOLL_FREE.match(sender):
        return _TOLL_FREE_RATE
    return _LONG_CODE_RATE
