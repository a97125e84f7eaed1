"""What an inbound SMS asks for: opt out, opt in, help, or a reply a flow can route on.

The carrier keywords are matched on the whole message, trimmed and in any
case, as carriers match them. Only the meaning leaves this module; the
text a patient wrote is free text and is kept nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["HELP", "OPT_IN", "OPT_OUT", "REPLIES", "Inbound", "classify"]

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
# Replies a flow may offer ("Reply C to confirm, R to reschedule") and what they mean.
REPLIES = {
    "C": "confirm",
    "CONFIRM": "confirm",
    "R": "reschedule",
    "RESCHEDULE": "reschedule",
}

Kind = Literal["opt_out", "opt_in", "help", "reply"]


@dataclass(frozen=True, slots=True)
class Inbound:
    kind: Kind
    # For a reply: `confirm`, `reschedule`, or `other` for anything a flow did not offer.
    reply: str | None = None


def classify(body: str) -> Inbound:
    word = body.strip().strip(".!").strip().upper()
    if word in OPT_OUT:
        return Inbound("opt_out")
    if word in OPT_IN:
        return Inbound("opt_in")
    if word in HELP:
        return Inbound("help")
    return Inbound("reply", REPLIES.get(word, "other"))
