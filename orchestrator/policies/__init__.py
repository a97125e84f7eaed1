"""Send-time policies: pure functions the dispatcher and the simulator call."""

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): the settings read `staleness.DEFAULT_STALE_AFTER`,
# and a command that sends nothing (`flows validate`) loads none of the rest.
_HOME = {
    "Ask": ".pacing",
    "Bucket": ".pacing",
    "ConsentRecord": ".consent",
    "DEFAULT_STALE_AFTER": ".staleness",
    "Defer": ".gate",
    "Expire": ".gate",
    "PACED": ".pacing",
    "Pace": ".pacing",
    "Send": ".gate",
    "SendContext": ".gate",
    "Suppress": ".gate",
    "Taken": ".pacing",
    "Verdict": ".gate",
    "consent_decisions": ".consent",
    "contactable": ".consent",
    "decide": ".gate",
    "held_out": ".holdout",
    "in_window": ".quiet_hours",
    "is_stale": ".staleness",
    "may_contact": ".consent",
    "next_allowed": ".quiet_hours",
    "ordered_channels": ".consent",
    "stale_at": ".staleness",
    "supersedes": ".consent",
    "within_cap": ".frequency_cap",
}

__getattr__, __dir__ = exports(__name__, _HOME)
