"""A patient's journey through one flow, as core values.

A `Journey` holds the events it was folded from (sorted by when they
occurred, not when they arrived), the episodes they formed and the scheduled
messages those episodes want. The engine rebuilds it; nothing else writes it.

A journey is bounded (`orchestrator.settle`): events that occurred before its
`checkpoint` are folded into the checkpoint and no longer kept, and episodes
long over are settled out of it (the store keeps them for figures and the
timeline), so one more event costs the same after ten events or ten thousand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from enum import StrEnum

from .event import Channel, Event, Patient
from .flows.timing import Anchor
from .frozen import builder

__all__ = [
    "DEFAULT_SETTLE_AFTER",
    "AppointmentState",
    "Checkpoint",
    "EncounterState",
    "Episode",
    "EpisodeStatus",
    "Journey",
    "Recipient",
    "ScheduledMessage",
    "StageVisit",
]

# How long a journey keeps its events (`settle`), here so that the settings can
# name it without loading the fold. A month: a feed that is days late (an EHR
# outage, a backlog replayed) is still folded exactly in order, and a dialysis
# patient's journey holds about a dozen sessions rather than years of them.
DEFAULT_SETTLE_AFTER = timedelta(days=30)


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
class Checkpoint:
    """A journey's episodes, messages and patient as they stood after some of its events.

    As a journey's `checkpoint`, what a re-fold starts from: every event that
    occurred before `at` folded in, and none kept. As its `next_checkpoint`,
    the state after its first `holds` kept events (taken as they were
    folded, so that moving the checkpoint up costs no re-fold); `at` is then
    unused. Settled episodes and their messages are in neither.
    """

    at: datetime
    episodes: tuple[Episode, ...] = ()
    messages: Mapping[str, ScheduledMessage] = field(default_factory=dict)
    patient: Patient | None = None
    holds: int = 0


@dataclass(frozen=True, slots=True)
class Journey:
    """One patient's path through one flow.

    `events` are those folded since the checkpoint (all of them without
    one); `dropped` says why each message the latest fold removed went.
    """

    patient_id: str
    flow_id: str
    events: tuple[Event, ...] = ()
    episodes: tuple[Episode, ...] = ()
    messages: Mapping[str, ScheduledMessage] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    patient: Patient | None = None
    checkpoint: Checkpoint | None = None
    next_checkpoint: Checkpoint | None = None
    # Events since the checkpoint that start no episode here, in every re-fold
    # too: those an older version of the flow took, and those that reached this
    # version after a newer one superseded it (`versions.advance_versions`).
    no_start: frozenset[str] = frozenset()
    # Events since the checkpoint whose appointment or encounter no episode here
    # adopts: those an older version's episode took (it is that episode's).
    no_adopt: frozenset[str] = frozenset()

    @classmethod
    def start(cls, patient_id: str, flow_id: str) -> Journey:
        if cls is Journey:
            return _new_journey(patient_id, flow_id)  # once per patient and flow: made quickly
        return cls(patient_id=patient_id, flow_id=flow_id)

    def at_checkpoint(self) -> Journey:
        """The journey a re-fold starts from: the checkpoint's, with no events since."""
        c = self.checkpoint
        if c is None:
            return Journey(
                self.patient_id, self.flow_id, no_start=self.no_start, no_adopt=self.no_adopt
            )
        return Journey(
            self.patient_id,
            self.flow_id,
            episodes=c.episodes,
            messages=c.messages,
            patient=c.patient,
            checkpoint=c,
            no_start=self.no_start,
            no_adopt=self.no_adopt,
        )

    def with_settled(self, settled: Iterable[Episode]) -> Journey:
        """The whole journey, for figures and timelines: settled episodes back in, by start."""
        episodes = (*settled, *self.episodes)
        if len(episodes) == len(self.episodes):
            return self
        return replace(self, episodes=tuple(sorted(episodes, key=lambda e: e.started_at)))

    @property
    def horizon(self) -> datetime | None:
        """Events that occurred before this are no longer kept: they fold in at the checkpoint."""
        return self.checkpoint.at if self.checkpoint else None

    def episode(self, episode_id: str) -> Episode | None:
        return next((e for e in self.episodes if e.id == episode_id), None)


_new_journey = builder(Journey)
