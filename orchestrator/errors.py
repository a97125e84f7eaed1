"""The orchestrator's exceptions, one tree under `OrchestratorError`.

* OrchestratorError
  * InputError        - an event, HL7 v2 message or FHIR resource is malformed
    * JsonError       - a body or line is not JSON, or not within the input limits
  * FlowError         - a flow file is invalid (carries every problem found)
  * TemplateError     - a message template is missing or does not render
  * PreviewError      - a preview asked for what its flow lacks, or a test send has no recipient
  * StoreError        - the store failed (translated from the driver)
    * UnstorableError   - the store refused one value (a NUL on PostgreSQL, too long)
  * SendError         - a connector could not send
    * TransientSendError  - worth retrying later
    * PermanentSendError  - retrying cannot help; audited as failed
      * RecipientOptedOutError - the provider says the recipient unsubscribed
      * MessageStaleError - the message reached its staleness limit before it went
    * AmbiguousSendError  - the provider may have it; reconciled, never resent blindly

Messages name where, what and what was expected, never a patient's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AmbiguousSendError",
    "FlowError",
    "FlowProblem",
    "InputError",
    "JsonError",
    "MessageStaleError",
    "OrchestratorError",
    "PermanentSendError",
    "PreviewError",
    "RecipientOptedOutError",
    "SendError",
    "StoreError",
    "TemplateError",
    "TransientSendError",
    "UnstorableError",
]


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class InputError(OrchestratorError):
    """Raised when an inbound event cannot be accepted.

    `where` names the input (event id, line number), `problems` the fields.
    """

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.where = where
        self.problems = tuple(problems)
        super().__init__(f"{where}: " + "; ".join(self.problems))


class JsonError(InputError):
    """Raised when a body or line cannot be read as JSON within the input limits.

    `kind` says why: `syntax` (not JSON, not UTF-8), `depth` (nested too
    deeply to read safely), `number` (an integer beyond 64 bits, or a number
    that is not finite). A FHIR answer maps `depth` to "too-costly".
    """

    def __init__(self, where: str, kind: Literal["syntax", "depth", "number"], problem: str):
        self.kind = kind
        super().__init__(where, [problem])


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One problem in a flow file: where it is and what is wrong."""

    file: str
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        return f"{place} {self.path}: {self.message}" if self.path else f"{place}: {self.message}"


class FlowError(OrchestratorError):
    """Raised when flow files are invalid; `problems` lists every one found."""

    def __init__(self, problems: Sequence[FlowProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TemplateError(OrchestratorError):
    """Raised when a message template is missing or fails to render."""


class PreviewError(OrchestratorError):
    """A preview asked for a message, language or persona its flow lacks, or a test
    send for a channel whose test recipient (or connector) is not set."""


class StoreError(OrchestratorError):
    """Raised when the store fails; the driver's error is the cause."""


class UnstorableError(StoreError):
    """The store refused a value of this one write (PostgreSQL: a NUL, a string too long).

    The store works; this input does not fit it. Whoever wrote it fails that one
    item with `reason` (`store:<driver error>`) and goes on with the others.
    """

    @property
    def reason(self) -> str:
        cause = self.__cause__
        driver = getattr(cause, "orig", None) or cause
        return f"store:{driver.__class__.__name__}"


class SendError(OrchestratorError):
    """Raised by a connector that could not hand a message over."""


class TransientSendError(SendError):
    """A send that may succeed later (rate limit, timeout before sending, 5xx)."""


class PermanentSendError(SendError):
    """A send that cannot succeed (invalid number, rejected address)."""


class RecipientOptedOutError(PermanentSendError):
    """The provider refuses: the recipient unsubscribed (Twilio 21610).

    The connector has recorded the opt-out; the message is suppressed on this channel.
    """


class MessageStaleError(PermanentSendError):
    """Raised by a connector handed a message whose staleness limit has come.

    Nothing went to the provider; the message is expired (reason `stale`), and
    no other channel is tried: it would be just as late there.
    """


class AmbiguousSendError(SendError):
    """The request may have reached the provider (a timeout after sending).

    Resending could duplicate the message: it is held and reconciled from a
    delivery callback or the connector's `find`.
    """
