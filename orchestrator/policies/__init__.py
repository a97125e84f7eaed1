"""Send-time policies: pure functions the dispatcher and the simulator call."""

from .consent import (
    ConsentRecord,
    consent_decisions,
    contactable,
    may_contact,
    ordered_channels,
    supersedes,
)
from .frequency_cap import within_cap
from .gate import Defer, Expire, Send, SendContext, Suppress, Verdict, decide
from .holdout import held_out
from .pacing import PACED, Ask, Bucket, Pace, Taken
from .quiet_hours import in_window, next_allowed
from .staleness import DEFAULT_STALE_AFTER, is_stale, stale_at

__all__ = [
    "DEFAULT_STALE_AFTER",
    "PACED",
    "Ask",
    "Bucket",
    "ConsentRecord",
    "Defer",
    "Expire",
    "Pace",
    "Send",
    "SendContext",
    "Suppress",
    "Taken",
    "Verdict",
    "consent_decisions",
    "contactable",
    "decide",
    "held_out",
    "in_window",
    "is_stale",
    "may_contact",
    "next_allowed",
    "ordered_channels",
    "stale_at",
    "supersedes",
    "within_cap",
]
