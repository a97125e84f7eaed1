"""Pacing the dispatcher's sends to each sender's rate, through buckets in the store.

`plan_for(settings)` names the sender of each channel and its pace: the
Twilio messaging service or number for SMS, the SendGrid sender for email,
else `sandbox`. Its rate is `ORCHESTRATOR_SENDER_RATES[sender]`, else the
channel's setting (`ORCHESTRATOR_SMS_RATE`, `ORCHESTRATOR_EMAIL_RATE`), else
what such a sender takes: a US short code 100 segments a second, a toll-free
number 3, any other number 1 (one long code), a SendGrid sender 100 emails a
second. A messaging service (`MG...`) is paced only when a rate is set for
it: its pool's throughput depends on the numbers in it. Nor is the sandbox:
a rehearsal then paces as the sender it stands for. A rate of 0 (or "off"
in `ORCHESTRATOR_SENDER_RATES`) turns a sender's pacing off;
`ORCHESTRATOR_PACING=off` turns it off for every sender. The burst is the
setting, else one second of the rate. `plan_for` is what `run`, `simulate`,
the what-if, the journey map and the console's draft comparison all pace by.

The pace is the process's, not the bucket row's: processes on one store
with different settings share each sender's bucket, each refilling it at its
own rate. Give every process the same pacing settings.

`Pacer.admit` takes the tokens of a batch's sends from the store's shared
buckets (`ports.SendBuckets`), one take per bucket, in (sender, channel)
order: each bucket's row stays locked until the batch's transaction ends,
so two dispatchers always lock them in one order and never wait on each
other. The dispatcher holds what must wait and expires what could only go
stale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..event import Channel
from ..policies.pacing import Ask, Pace, Taken
from ..ports import Outgoing, SendBuckets
from ..settings import Settings
from ..sms import segments

__all__ = ["SANDBOX", "Pacer", "PacingPlan", "Sender", "cost", "plan_for"]

SANDBOX = "sandbox"

log = logging.getLogger(__name__)

# Twilio's default throughput per sender kind (segments a second).
_SHORT_CODE_RATE = 100.0
_TOLL_FREE_RATE = 3.0
_LONG_CODE_RATE = 1.0
_EMAIL_RATE = 100.0
_MESSAGING_SERVICE = re.compile(r"^MG[0-9A-Za-z]*$")
_SHORT_CODE = re.compile(r"^\d{5,6}$")
_TOLL_FREE = re.compile(r"^\+18(00|33|44|55|66|77|88)\d{7}$")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a channel's sends go out as, and at what pace."""

    name: str
    pace: Pace


@dataclass(frozen=True, slots=True)
class PacingPlan:
    """The sender of each paced channel; a channel not listed is not paced.

    `unpaced`: for a channel not paced, its sender and why (logged at startup).
    """

    senders: Mapping[Channel, Sender]
    unpaced: Mapping[Channel, tuple[str, str]] = field(default_factory=dict)

    def log(self) -> None:
        """Say, once per channel, at what pace each sender is sent to (no patient data)."""
        for channel, sender in self.senders.items():
            log.info(
                "pacing.sender",
                extra={
                    "channel": channel.value,
                    "sender": sender.name,
                    "rate": sender.pace.rate,
                    "burst": sender.pace.burst,
                },
            )
        for channel, (name, why) in self.unpaced.items():
            log.info(
                "pacing.off",
                extra={"channel": channel.value, "sender": name, "why": why},
            )


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
    ) -> list[Taken]:
        """What each send was told, in order (a channel not paced: taken, at once).

        A send whose key is in `returning` was held before.
        """
        told: list[Taken] = [Taken(True, now)] * len(sends)
        by_channel: dict[Channel, list[int]] = {}
        for index, outgoing in enumerate(sends):
            if outgoing.channel in self.plan.senders:
                by_channel.setdefault(outgoing.channel, []).append(index)
        # In (sender, channel) order: see the module's docstring.
        order = sorted(by_channel, key=lambda c: (self.plan.senders[c].name, c.value))
        for channel in order:
            indexes = by_channel[channel]
            sender = self.plan.senders[channel]
            answers = self.buckets.take_tokens(
                sender.name,
                channel,
                sender.pace,
                [
                    Ask(cost(sends[i]), sends[i].valid_until, sends[i].key in returning)
                    for i in indexes
                ],
                now,
            )
            for index, taken in zip(indexes, answers, strict=True):
                told[index] = taken
            reset = next((t.reset for t in answers if t.reset is not None), None)
            if reset is not None:
                log.warning(
                    "pacing.bucket_reset",
                    extra={
                        "channel": channel.value,
                        "sender": sender.name,
                        "ahead_seconds": reset.total_seconds(),
                    },
                )
        return told


def plan_for(settings: Settings) -> PacingPlan:
    """Each channel's sender and pace, from the settings (see the module's docstring)."""
    senders: dict[Channel, Sender] = {}
    unpaced: dict[Channel, tuple[str, str]] = {}
    sms = settings.twilio_messaging_service_sid or settings.twilio_from_number
    email = settings.sendgrid_sender
    for channel, given, rate, burst, default in (
        (Channel.SMS, sms, settings.sms_rate, settings.sms_burst, _sms_rate(sms)),
        (Channel.EMAIL, email, settings.email_rate, settings.email_burst, _EMAIL_RATE),
    ):
        name = given or SANDBOX
        override = settings.sender_rates.get(name)
        if not settings.pacing:
            unpaced[channel] = (name, "ORCHESTRATOR_PACING is off")
            continue
        if override is not None:
            rate, burst = override.rate, override.burst or burst
        elif rate is None:
            if name == SANDBOX:
                unpaced[channel] = (name, "the sandbox: no rate set for it")
                continue
            if default is None:
                unpaced[channel] = (name, "a messaging service: no rate set for it")
                continue
            rate = default
        if rate == 0:
            unpaced[channel] = (name, "its rate is off")
            continue
        senders[channel] = Sender(name, Pace(rate, burst or max(1.0, rate)))
    return PacingPlan(senders, unpaced)


def _sms_rate(sender: str | None) -> float | None:
    """What a Twilio sender takes by default; None for a messaging service (not paced)."""
    if sender is None:
        return _LONG_CODE_RATE
    if _MESSAGING_SERVICE.match(sender):
        return None
    if _SHORT_CODE.match(sender):
        return _SHORT_CODE_RATE
    if _TOLL_FREE.match(sender):
        return _TOLL_FREE_RATE
    return _LONG_CODE_RATE
