"""The decision record: one decision about one scheduled message.

It is the line `simulate` prints and the row the audit log keeps, with the
fields DESIGN.md fixes (patient, flow, episode, stage, message, channel,
template, due time, status, reason) and the message's idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .journey import ScheduledMessage
from .message_status import MessageStatus

__all__ = ["DecisionRecord", "record"]


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    at: datetime
    patient_id: str
    flow: str
    flow_version: int
    episode: str
    stage: str
    message: str
    recipient: str
    channel: str | None
    language: str | None
    template: str
    due_at: datetime
    status: str
    reason: str | None
    key: str
    event_id: str | None = None

    def as_json(self) -> dict[str, str | int | None]:
        line: dict[str, str | int | None] = {
            "at": self.at.isoformat(),
            "patient_id": self.patient_id,
            "flow": self.flow,
            "flow_version": self.flow_version,
            "episode": self.episode,
            "stage": self.stage,
            "message": self.message,
            "recipient": self.recipient,
            "channel": self.channel,
            "language": self.language,
            "template": self.template,
            "due_at": self.due_at.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "key": self.key,
        }
        if self.event_id is not None:
            line["event_id"] = self.event_id
        return line


def record(
    message: ScheduledMessage,
    at: datetime,
    status: MessageStatus,
    reason: str | None,
    *,
    channel: str | None = None,
    language: str | None = None,
    event_id: str | None = None,
) -> DecisionRecord:
    """The record of deciding `status` (for `reason`) about `message` at `at`."""
    return DecisionRecord(
        at=at,
        patient_id=message.recipient.patient_id,
        flow=message.flow_id,
        flow_version=message.flow_version,
        episode=message.episode_id,
        stage=message.stage_id,
        message=message.message_id,
        recipient=str(message.recipient),
        channel=channel,
        language=language,
        template=message.template,
        due_at=message.due_at,
        status=status,
        reason=reason,
        key=message.key,
        event_id=event_id,
    )
