"""A patient's journey through one flow, as core values.

A `Journey` holds the events it was folded from (sorted by when they
occurred, not when they arrived), the episodes they formed and the scheduled
messages those episodes want. The engine rebuilds it; nothing else writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum

from .event import Channel, Event, Patient
from .flows.timing import Anchor

__all__ = [
    "AppointmentState",
    "EncounterState",
    "Episode",
    "EpisodeStatus",
    "Journey",
    "Recipient",
    "ScheduledMessage",
    "StageVisit",
]


class EpisodeStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class AppointmentState:
    id: str
    start: datetime | None
    status: str
    service: str | None = None
    location: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class EncounterState:
    id: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    service: str | None = None


@dataclass(frozen=True, slots=True)
class StageVisit:
    stage_id: str
    entered_at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class Episode:
    """One pass through a flow, from the event that started it to its end."""

    id: str
    started_at: datetime
    stage_id: str | None
    stage_entered_at: datetime
    status: EpisodeStatus = EpisodeStatus.ACTIVE
    outcome: str | None = None
    appointments: Mapping[str, AppointmentState] = field(default_factory=dict)
    encounters: Mapping[str, EncounterState] = field(default_factory=dict)
    appointment_id: str | None = None
    encounter_id: str | None = None
    history: tuple[StageVisit, ...] = ()
    events: tuple[Event, ...] = ()
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a scheduled message goes to: the patient, or one of their caregivers."""

    patient_id: str
    caregiver_id: str | None = None

    def __str__(self) -> str:
        return f"caregiver:{self.caregiver_id}" if self.caregiver_id else "patient"


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    """One instance of a flow message, with the instant it is due.

    `key` is its idempotency key: the same instance decided twice (a replayed
    event, a restarted worker) has the same key and is sent at most once.
    """

    key: str
    flow_id: str
    flow_version: int
    episode_id: str
    stage_id: str
    message_id: str
    template: str
    channels: tuple[Channel, ...]
    recipient: Recipient
    due_at: datetime
    expires_at: datetime | None
    anchor: Anchor
    created_by: str
    timezone: str
    appointment_id: str | None = None
    encounter_id: str | None = None
    topic: str | None = None
    essential: bool = False
    window: tuple[time, time] | None = None


@dataclass(frozen=True, slots=True)
class Journey:
    """One patient's path through one flow."""

    patient_id: str
    flow_id: str
    events: tuple[Event, ...] = ()
    episodes: tuple[Episode, ...] = ()
    messages: Mapping[str, ScheduledMessage] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    patient: Patient | None = None

    @classmethod
    def start(cls, patient_id: str, flow_id: str) -> Journey:
        return cls(patient_id=patient_id, flow_id=flow_id)

    def episode(self, episode_id: str) -> Episode | None:
        return next((e for e in self.episodes if e.id == episode_id), None)
