"""What the engine decides: actions, and the decision that carries them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .journey import Journey, ScheduledMessage

__all__ = [
    "Action",
    "CancelMessage",
    "Decision",
    "EndEpisode",
    "EnterStage",
    "ExpireMessage",
    "ScheduleMessage",
]


@dataclass(frozen=True, slots=True)
class EnterStage:
    flow_id: str
    episode_id: str
    stage_id: str
    event_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleMessage:
    """Schedule a message, or update a pending one with the same key."""

    message: ScheduledMessage


@dataclass(frozen=True, slots=True)
class CancelMessage:
    """Cancel a pending message; a message already sent is left as it is."""

    message: ScheduledMessage
    reason: str


@dataclass(frozen=True, slots=True)
class ExpireMessage:
    """A message that was already pointless when it was decided."""

    message: ScheduledMessage
    reason: str


@dataclass(frozen=True, slots=True)
class EndEpisode:
    flow_id: str
    episode_id: str
    outcome: str
    at: datetime


Action = EnterStage | ScheduleMessage | CancelMessage | ExpireMessage | EndEpisode


@dataclass(frozen=True, slots=True)
class Decision:
    """The journey after an event, and the actions it calls for."""

    journey: Journey
    actions: tuple[Action, ...]
