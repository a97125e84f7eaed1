"""The fold: how one event changes a journey's episodes and scheduled messages.

`Fold` is the mutable working state of `engine.advance`: it resumes from a
journey, takes events in the order they occurred, and freezes into the next
journey. Everything here is pure; the engine module states the rules and
turns a fold's result into actions.

The fold reads its flow through `Flow.plan` (triggers compiled and indexed
by event type) and makes its frozen values with `frozen.builder`: it runs for
every event on every flow that reads its type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from zoneinfo import ZoneInfo

from .event import Event, EventType, Patient
from .flows.model import ANY_STAGE, Flow, MessageSpec, Stage
from .flows.plan import FlowPlan, SpecPlan, matches_any, waits_for_appointment
from .flows.timing import Anchor
from .frozen import builder
from .journey import (
    AppointmentState,
    Checkpoint,
    EncounterState,
    Episode,
    EpisodeStatus,
    Journey,
    Recipient,
    ScheduledMessage,
    StageVisit,
)

__all__ = ["SUBJECT_ANCHORS", "EpisodeDraft", "Fold"]

_APPOINTMENT_STATUS = {
    EventType.APPOINTMENT_BOOKED: "booked",
    EventType.APPOINTMENT_RESCHEDULED: "booked",
    EventType.APPOINTMENT_CANCELLED: "cancelled",
    EventType.APPOINTMENT_NO_SHOW: "no_show",
    EventType.APPOINTMENT_CHECKED_IN: "checked_in",
    EventType.APPOINTMENT_COMPLETED: "completed",
}
# Statuses after which nothing that waits for the appointment makes sense.
_APPOINTMENT_OVER = frozenset({"cancelled", "no_show", "checked_in", "completed"})
# Events that can bring an appointment or encounter an episode does not yet
# own into it (a surgery booked after the consult, an admission). Any other
# event about an unknown appointment belongs to some other care path.
_ADOPTING = frozenset(
    {EventType.APPOINTMENT_BOOKED, EventType.PATIENT_ADMITTED, EventType.PATIENT_DISCHARGED}
)
SUBJECT_ANCHORS = frozenset(
    {Anchor.APPOINTMENT_START, Anchor.ENCOUNTER_ADMITTED_AT, Anchor.ENCOUNTER_DISCHARGED_AT}
)

_ACTIVE, _COMPLETED, _EXITED = EpisodeStatus.ACTIVE, EpisodeStatus.COMPLETED, EpisodeStatus.EXITED
_STAGE_ENTERED, _EVENT_OCCURRED_AT = Anchor.STAGE_ENTERED, Anchor.EVENT_OCCURRED_AT

# Called by position, as in `engine`: mypy checks the types, and
# tests/orchestrator/test_frozen.py pins the field order these calls follow.
_new_episode = builder(Episode)
_new_journey = builder(Journey)
_new_message = builder(ScheduledMessage)
_new_visit = builder(StageVisit)
_new_appointment = builder(AppointmentState)
_new_encounter = builder(EncounterState)
_new_recipient = builder(Recipient)


@dataclass(slots=True)
class EpisodeDraft:
    """An episode while it is folded: mutable, frozen back into an `Episode`."""

    id: str
    started_at: datetime
    stage_id: str | None
    stage_entered_at: datetime
    status: EpisodeStatus
    outcome: str | None
    appointments: dict[str, AppointmentState]
    encounters: dict[str, EncounterState]
    appointment_id: str | None
    encounter_id: str | None
    history: list[StageVisit]
    events: list[Event]
    ended_at: datetime | None

    @classmethod
    def thaw(cls, e: Episode) -> EpisodeDraft:
        return cls(
            e.id,
            e.started_at,
            e.stage_id,
            e.stage_entered_at,
            e.status,
            e.outcome,
            dict(e.appointments),
            dict(e.encounters),
            e.appointment_id,
            e.encounter_id,
            list(e.history),
            list(e.events),
            e.ended_at,
        )

    def freeze(self) -> Episode:
        return _new_episode(
            self.id,
            self.started_at,
            self.stage_id,
            self.stage_entered_at,
            self.status,
            self.outcome,
            self.appointments,
            self.encounters,
            self.appointment_id,
            self.encounter_id,
            tuple(self.history),
            tuple(self.events),
            self.ended_at,
        )


@dataclass(slots=True)
class Fold:
    """The mutable state of one fold; frozen into a `Journey` at the end."""

    flow: Flow
    patient_id: str
    flow_id: str
    episodes: list[Episode | EpisodeDraft]
    messages: dict[str, ScheduledMessage]
    dropped: dict[str, str]
    patient: Patient | None
    checkpoint: Checkpoint | None = None
    next_checkpoint: Checkpoint | None = None
    no_start: frozenset[str] = frozenset()
    no_adopt: frozenset[str] = frozenset()
    # Keys this fold wrote, in order: what the diff compares after one step.
    touched: dict[str, None] = field(default_factory=dict)
    plan: FlowPlan = field(init=False)
    # The patient as a recipient, with its key material up to the message id
    # (`_key_material`): made once per fold.
    _to_patient: tuple[tuple[Recipient, str], ...] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.plan = self.flow.plan

    @classmethod
    def resume(cls, journey: Journey, flow: Flow) -> Fold:
        # `dropped` starts empty: the diff reads it only for keys this fold drops,
        # and carrying it over would grow it with every message ever dropped.
        return cls(
            flow,
            journey.patient_id,
            journey.flow_id,
            list(journey.episodes),
            dict(journey.messages),
            {},
            journey.patient,
            journey.checkpoint,
            journey.next_checkpoint,
            journey.no_start,
            journey.no_adopt,
        )

    def frozen_episodes(self) -> tuple[Episode, ...]:
        return tuple([e.freeze() if isinstance(e, EpisodeDraft) else e for e in self.episodes])

    def freeze(self, events: tuple[Event, ...]) -> Journey:
        return _new_journey(
            self.patient_id,
            self.flow_id,
            events,
            self.frozen_episodes(),
            self.messages,
            self.dropped,
            self.patient,
            self.checkpoint,
            self.next_checkpoint,
            self.no_start,
            self.no_adopt,
        )

    def _draft(self, index: int) -> EpisodeDraft:
        """The episode at `index`, thawed for writing (once per fold)."""
        episode = self.episodes[index]
        if isinstance(episode, Episode):
            episode = self.episodes[index] = EpisodeDraft.thaw(episode)
        return episode

    # -- one event -----------------------------------------------------------

    def step(self, event: Event) -> None:
        self.patient = event.patient
        has_subject = event.appointment is not None or event.encounter is not None
        index = self._owner(event) if has_subject else None
        if index is not None:
            event = _with_known_services(self.episodes[index], event)
        elif not has_subject or (event.type in _ADOPTING and event.id not in self.no_adopt):
            # What an older version's episode took is its appointment: not adopted here.
            index = self._mover(event)
        if index is None and self._starts(event):
            index = self._open(event)
        if index is None and not has_subject:
            self._exit_all(event)
            index = self._latest_active()
        if index is None:
            return
        self._apply(index, event)

    def _owner(self, event: Event) -> int | None:
        appointment, encounter = event.appointment, event.encounter
        for i in range(len(self.episodes) - 1, -1, -1):
            episode = self.episodes[i]
            if episode.status is _EXITED:
                continue
            if appointment is not None and appointment.id in episode.appointments:
                return i
            if encounter is not None and encounter.id in episode.encounters:
                return i
        return None

    def _mover(self, event: Event) -> int | None:
        if event.type not in self.plan.entries:
            return None
        for i in range(len(self.episodes) - 1, -1, -1):
            episode = self.episodes[i]
            if episode.status is _ACTIVE and self._target(episode, event) is not None:
                return i
        return None

    def _latest_active(self) -> int | None:
        for i in range(len(self.episodes) - 1, -1, -1):
            if self.episodes[i].status is _ACTIVE:
                return i
        return None

    def _starts(self, event: Event) -> bool:
        return event.id not in self.no_start and self.plan.starts_on(event)

    def _open(self, event: Event) -> int:
        digest = blake2b(
            f"{self.patient_id}\x1f{self.flow_id}\x1f{event.id}".encode(), digest_size=6
        ).hexdigest()
        self.episodes.append(
            Episode(
                id=f"ep-{digest}",
                started_at=event.occurred_at,
                stage_id=None,
                stage_entered_at=event.occurred_at,
            )
        )
        return len(self.episodes) - 1

    def _exit_all(self, event: Event) -> None:
        outcome = self.plan.exit_outcome(event)
        if outcome is None:
            return
        # A completed episode may still have follow-ups pending: they end too.
        for i, episode in enumerate(self.episodes):
            if episode.status is not _EXITED:
                self._end(i, event, outcome)

    def _target(self, episode: Episode | EpisodeDraft, event: Event) -> Stage | None:
        """The stage `event` moves `episode` to, if any: the first allowed one in flow order."""
        entries = self.plan.entries.get(event.type)
        if entries is None:
            return None
        stage_id = episode.stage_id
        current = self.flow.stage_index[stage_id] if stage_id else None
        status = episode.status
        for entry in entries:
            if entry.match is not None and not entry.match(event):
                continue
            sources = entry.sources
            if status is _COMPLETED:
                # only explicitly out of a final stage
                allowed = not entry.anywhere and stage_id in sources
            elif current is None:
                allowed = entry.anywhere
            elif not sources:
                allowed = entry.position > current
            elif ANY_STAGE in sources:
                allowed = entry.position != current
            else:
                allowed = stage_id in sources
            if allowed:
                return entry.stage
        return None

    def _apply(self, index: int, event: Event) -> None:
        episode = self._track_subjects(index, event)
        prior = len(episode.events)  # the events before this one, for `unless`
        episode.events.append(event)
        plan, kind = self.plan, event.type
        # What this event makes pointless goes first, so that what it starts survives.
        if kind in plan.cancelling_types:
            for message in self._pending(episode.id):
                spec = plan.specs[message.message_id]
                cancel = spec.cancel_on.get(kind)
                if cancel is not None and matches_any(cancel, event):
                    self._drop(message, f"cancel_on:{kind.value}")
                    continue
                unless = spec.unless.get(kind)
                if unless is not None and matches_any(unless, event):
                    self._drop(message, f"unless:{kind.value}")
        target = self._target(episode, event)
        if target is not None:
            self._enter(index, target, event, prior)
        else:
            outcome = plan.exit_outcome(event)
            if outcome is not None:
                self._end(index, event, outcome)
                return
        if episode.stage_id is not None:
            for spec in plan.sends.get((episode.stage_id, kind), ()):
                if matches_any(spec.send_on[kind], event):
                    self._schedule(index, spec, event, prior)

    def _track_subjects(self, index: int, event: Event) -> EpisodeDraft:
        episode = self._draft(index)
        if event.appointment is not None:
            appointment = event.appointment
            known = episode.appointments.get(appointment.id)
            start = appointment.start or (known.start if known else None)
            status = _APPOINTMENT_STATUS.get(event.type, known.status if known else "booked")
            state = _new_appointment(
                appointment.id,
                start,
                status,
                appointment.service or (known.service if known else None),
                appointment.location or (known.location if known else None),
                appointment.provider or (known.provider if known else None),
            )
            episode.appointments[appointment.id] = state
            episode.appointment_id = appointment.id
            if known is not None and known.start != start:
                self._retime(
                    index, lambda m: m.appointment_id == appointment.id, "rescheduled", event
                )
            if status in _APPOINTMENT_OVER and (known is None or known.status != status):
                self._drop_waiting_for(episode, appointment.id, status)
        if event.encounter is not None:
            encounter = event.encounter
            seen = episode.encounters.get(encounter.id)
            enc = _new_encounter(
                encounter.id,
                encounter.admitted_at or (seen.admitted_at if seen else None),
                encounter.discharged_at or (seen.discharged_at if seen else None),
                encounter.service or (seen.service if seen else None),
            )
            episode.encounters[encounter.id] = enc
            episode.encounter_id = encounter.id
            if seen is not None and seen != enc:
                self._retime(
                    index, lambda m: m.encounter_id == encounter.id, "encounter_updated", event
                )
        return episode

    def _enter(self, index: int, stage: Stage, event: Event, prior: int) -> None:
        episode = self._draft(index)
        final = stage.final
        episode.stage_id = stage.id
        episode.stage_entered_at = event.occurred_at
        episode.history.append(_new_visit(stage.id, event.occurred_at, event.id))
        episode.status = _COMPLETED if final else _ACTIVE
        episode.outcome = "completed" if final else None
        episode.ended_at = event.occurred_at if final else None
        for spec in self.plan.stage_specs[stage.id]:
            if not spec.send_on:
                self._schedule(index, spec, event, prior)

    def _end(self, index: int, event: Event, outcome: str) -> None:
        episode = self._draft(index)
        episode.status = _EXITED
        episode.outcome = outcome
        episode.ended_at = event.occurred_at
        for message in self._pending(episode.id):
            self._drop(message, f"journey_exited:{outcome}")

    # -- scheduled messages --------------------------------------------------

    def _spec(self, message_id: str, episode: EpisodeDraft) -> MessageSpec:
        """The message as this episode's persona gets it."""
        plan = self.plan.specs[message_id]
        if plan.spec.variants:
            return plan.for_persona(_persona(self.flow, episode))
        return plan.spec

    def _pending(self, episode_id: str) -> list[ScheduledMessage]:
        return [m for m in self.messages.values() if m.episode_id == episode_id]

    def _drop(self, message: ScheduledMessage, reason: str) -> None:
        del self.messages[message.key]
        self.touched[message.key] = None
        self.dropped[message.key] = reason

    def _drop_waiting_for(self, episode: EpisodeDraft, appointment_id: str, status: str) -> None:
        """Drop what an appointment that is over makes pointless.

        A cancellation drops everything tied to the appointment; a check-in,
        completion or no-show drops what waits for its start (reminders, and
        messages that expire at the start).
        """
        for message in self._pending(episode.id):
            if message.appointment_id != appointment_id:
                continue
            spec = self._spec(message.message_id, episode)
            if status == "cancelled" or waits_for_appointment(spec):
                self._drop(message, f"appointment_{status}")

    def _retime(
        self, index: int, affected: Callable[[ScheduledMessage], bool], reason: str, event: Event
    ) -> None:
        """Recompute what is timed from an appointment or encounter that changed.

        A message whose due time moves gets a new key (the old one is dropped
        with `reason`); one whose expiry alone moves keeps its key.
        """
        episode = self._draft(index)
        for message in self._pending(episode.id):
            if not affected(message):
                continue
            spec = self._spec(message.message_id, episode)
            zone = _zone(message.timezone)
            due = message.due_at
            if spec.timing.anchor in SUBJECT_ANCHORS:
                anchor_at = _subject_time(episode, spec.timing.anchor, message)
                if anchor_at is None:
                    continue
                due = spec.timing.resolve(anchor_at, zone)
            expires = message.expires_at
            if spec.expiry is not None and spec.expiry.anchor in SUBJECT_ANCHORS:
                expiry_at = _subject_time(episode, spec.expiry.anchor, message)
                expires = spec.expiry.resolve(expiry_at, zone) if expiry_at else None
            if due == message.due_at:
                if expires != message.expires_at:
                    self.messages[message.key] = _retimed(
                        message, message.key, message.due_at, expires, message.created_by
                    )
                    self.touched[message.key] = None
                continue
            key = _key(self.flow, message.message_id, message.recipient, event.id, due)
            moved = _retimed(message, key, due, expires, event.id)
            self._drop(message, reason)
            self.messages[moved.key] = moved
            self.touched[moved.key] = None

    def _schedule(self, index: int, plan: SpecPlan, event: Event, prior: int) -> None:
        if plan.conditions is not None and not plan.conditions(event):
            return
        episode = self._draft(index)
        if plan.unless:
            for seen in episode.events[:prior]:
                unless = plan.unless.get(seen.type)
                if unless is not None and matches_any(unless, seen):
                    return
        spec = plan.spec
        if spec.variants:
            spec = plan.for_persona(_persona(self.flow, episode))
        timing, expiry = spec.timing, spec.expiry
        anchor = timing.anchor
        # `_anchor_time`, inline for the two anchors most messages are timed from.
        if anchor is _STAGE_ENTERED:
            anchor_at: datetime | None = episode.stage_entered_at
        elif anchor is _EVENT_OCCURRED_AT:
            anchor_at = event.occurred_at
        else:
            anchor_at = _subject_time(episode, anchor, episode)
        if anchor_at is None:
            return  # the anchor is not known (no appointment start yet): nothing to time it by
        patient = event.patient
        zone_name = patient.timezone or self.flow.timezone
        zone = _zone(zone_name)
        due = timing.resolve(anchor_at, zone)
        expires = None
        if expiry is not None:
            expiry_at = _anchor_time(episode, expiry.anchor, event)
            expires = expiry.resolve(expiry_at, zone) if expiry_at else None
        recipients = self._to_patient
        if recipients is None:
            head = _key_material(self.flow, self.patient_id, None)
            recipients = self._to_patient = ((_new_recipient(self.patient_id, None), head),)
        if spec.topic is not None and patient.caregivers:
            recipients += tuple(
                (
                    _new_recipient(self.patient_id, c.id),
                    _key_material(self.flow, self.patient_id, c.id),
                )
                for c in patient.caregivers
                if spec.topic in c.receives
            )
        flow, stage_id, spec_id, event_id = self.flow, plan.stage.id, spec.id, event.id
        # One due time, so one timestamp, for every recipient.
        tail = f"\x1f{spec_id}\x1f{event_id}\x1f{int(due.timestamp())}"
        for recipient, head in recipients:
            key = _digest(head + tail)
            self.messages[key] = _new_message(
                key,
                flow.id,
                flow.version,
                episode.id,
                stage_id,
                spec_id,
                spec.template,
                spec.channels,
                recipient,
                due,
                expires,
                anchor,
                event_id,
                zone_name,
                episode.appointment_id,
                episode.encounter_id,
                spec.topic,
                spec.essential,
                spec.window,
            )
            self.touched[key] = None


def _retimed(
    m: ScheduledMessage, key: str, due: datetime, expires: datetime | None, created_by: str
) -> ScheduledMessage:
    """`replace(m, key=, due_at=, expires_at=, created_by=)`, through the builder."""
    return _new_message(
        key,
        m.flow_id,
        m.flow_version,
        m.episode_id,
        m.stage_id,
        m.message_id,
        m.template,
        m.channels,
        m.recipient,
        due,
        expires,
        m.anchor,
        created_by,
        m.timezone,
        m.appointment_id,
        m.encounter_id,
        m.topic,
        m.essential,
        m.window,
    )


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _with_known_services(episode: Episode | EpisodeDraft, event: Event) -> Event:
    """The event, with the service its episode knows for its appointment or encounter.

    A cancellation often carries only the appointment id; the flow's triggers
    narrowed by service must still match it.
    """
    appointment, encounter = event.appointment, event.encounter
    if appointment is not None and appointment.service is None:
        known = episode.appointments.get(appointment.id)
        if known is not None and known.service is not None:
            appointment = replace(appointment, service=known.service)
    if encounter is not None and encounter.service is None:
        seen = episode.encounters.get(encounter.id)
        if seen is not None and seen.service is not None:
            encounter = replace(encounter, service=seen.service)
    if appointment is event.appointment and encounter is event.encounter:
        return event
    return replace(event, appointment=appointment, encounter=encounter)


def _anchor_time(episode: EpisodeDraft, anchor: Anchor, event: Event) -> datetime | None:
    """The instant of `anchor` for a message that `event` schedules in `episode`."""
    if anchor is Anchor.STAGE_ENTERED:
        return episode.stage_entered_at
    if anchor is Anchor.EVENT_OCCURRED_AT:
        return event.occurred_at
    return _subject_time(episode, anchor, episode)


def _subject_time(
    episode: EpisodeDraft, anchor: Anchor, subject: EpisodeDraft | ScheduledMessage
) -> datetime | None:
    """The instant of an appointment or encounter anchor, for the subject's appointment."""
    if anchor is Anchor.APPOINTMENT_START:
        appointment = episode.appointments.get(subject.appointment_id or "")
        return appointment.start if appointment else None
    encounter = episode.encounters.get(subject.encounter_id or "")
    if encounter is None:
        return None
    return (
        encounter.admitted_at if anchor is Anchor.ENCOUNTER_ADMITTED_AT else encounter.discharged_at
    )


def _persona(flow: Flow, episode: EpisodeDraft) -> str | None:
    """The episode's persona: the first its opening event matches."""
    return flow.persona_of(episode.events[0]) if episode.events else None


def _key(flow: Flow, message_id: str, recipient: Recipient, created_by: str, due: datetime) -> str:
    """The idempotency key: flow version, message, recipient, creating event and due time.

    `Fold._schedule` builds the same material from the patient's head, made
    once per fold, and one tail per due time.
    """
    head = _key_material(flow, recipient.patient_id, recipient.caregiver_id)
    return _digest(f"{head}\x1f{message_id}\x1f{created_by}\x1f{int(due.timestamp())}")


def _key_material(flow: Flow, patient_id: str, caregiver_id: str | None) -> str:
    """The key material up to the message id: flow, version and recipient."""
    return f"{flow.id}\x1f{flow.version}\x1f{patient_id}\x1f{caregiver_id or ''}"


def _digest(material: str) -> str:
    return blake2b(material.encode(), digest_size=12).hexdigest()
