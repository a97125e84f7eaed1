"""A care path's flow as core values: stages, triggers, messages.

These are what the engine reads. The YAML shape and its validation live in
`schema`; this module holds only frozen values and event matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import cached_property
from typing import TYPE_CHECKING

from ..event import Channel, Event, EventType, JSONValue
from .timing import Anchor, Timing

if TYPE_CHECKING:
    from .plan import FlowPlan

__all__ = [
    "ANY_STAGE",
    "Condition",
    "Exit",
    "Flow",
    "FrequencyCap",
    "Idea",
    "MessageSpec",
    "MessageVariant",
    "Persona",
    "QuietHours",
    "Stage",
    "StageCategory",
    "StageNotes",
    "SuccessMetric",
    "Trigger",
    "event_field",
]

ANY_STAGE = "*"
Scalar = str | int | float | bool | None


class StageCategory(StrEnum):
    """Journey-map categories, in the order a patient meets them."""

    AWARENESS = "awareness"
    CONSIDERATION = "consideration"
    ACCESS = "access"
    DIAGNOSIS_PLANNING = "diagnosis_planning"
    TREATMENT = "treatment"
    FOLLOW_UP = "follow_up"


_MISSING = object()


_EVENT_PARTS = frozenset({"id", "type", "source", "patient", "appointment", "encounter"})


def event_field(event: Event, path: str) -> object:
    """Read a dotted path (`appointment.service`, `attributes.urgency`) from an event.

    Returns `None` where the path leads nowhere. `service` is the event's
    derived service (appointment, then encounter, then `attributes.service`);
    `patient.caregivers` is how many caregivers the patient has.
    """
    if path == "service":
        return event.service
    if path == "patient.caregivers":
        return len(event.patient.caregivers)
    head, _, rest = path.partition(".")
    if head == "attributes":
        value = event.attributes.get(rest, _MISSING)
        if value is _MISSING:
            value = _dig(event.attributes, rest)
        return None if value is _MISSING else value
    if head not in _EVENT_PARTS:
        return None
    found: object = getattr(event, head)
    for part in rest.split(".") if rest else ():
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def _dig(data: Mapping[str, JSONValue], dotted: str) -> object:
    value: object = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class Condition:
    """`path` matches any of `allowed`; strings match as globs (`cardiology.*`)."""

    path: str
    allowed: tuple[Scalar, ...]

    def holds(self, event: Event) -> bool:
        value = event.service if self.path == "service" else event_field(event, self.path)
        for expected in self.allowed:
            if isinstance(expected, str) and isinstance(value, str):
                if fnmatchcase(value, expected):
                    return True
            elif isinstance(expected, bool) or isinstance(value, bool):
                if value is expected:
                    return True
            elif value == expected:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Trigger:
    """An event type with conditions; on a stage, `sources` are the stages it may come from.

    `sources` empty means "any earlier stage"; it holds `ANY_STAGE` for any stage at all.
    """

    event: EventType
    conditions: tuple[Condition, ...] = ()
    sources: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        return event.type is self.event and all(c.holds(event) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class MessageVariant:
    """What a message changes for one persona: its template, channels or timing."""

    persona: str
    template: str | None = None
    channels: tuple[Channel, ...] | None = None
    timing: Timing | None = None


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A flow's definition of something to send."""

    id: str
    template: str
    channels: tuple[Channel, ...]
    timing: Timing
    send_on: tuple[Trigger, ...] = ()
    conditions: tuple[Condition, ...] = ()
    cancel_on: tuple[Trigger, ...] = ()
    unless: tuple[Trigger, ...] = ()
    expiry: Timing | None = None
    window: tuple[time, time] | None = None
    topic: str | None = None
    essential: bool = False
    # Percent of patients (0-100) who never get it, for measuring what it changes.
    holdout: float | None = None
    variants: tuple[MessageVariant, ...] = ()

    def for_persona(self, persona: str | None) -> MessageSpec:
        """The message as a patient of `persona` gets it (itself, without a variant)."""
        variant = next((v for v in self.variants if v.persona == persona), None)
        if variant is None:
            return self
        return replace(
            self,
            template=variant.template or self.template,
            channels=variant.channels or self.channels,
            timing=variant.timing or self.timing,
            variants=(),
        )

    @staticmethod
    def default_expiry(timing: Timing) -> Timing | None:
        """A reminder timed before an appointment expires when the appointment starts."""
        if timing.anchor is Anchor.APPOINTMENT_START and timing.offset < timedelta(0):
            return Timing(Anchor.APPOINTMENT_START)
        return None


@dataclass(frozen=True, slots=True)
class SuccessMetric:
    """How a stage's success is measured, for the journey map."""

    name: str
    description: str = ""
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Idea:
    """A to-be improvement for a stage, with who owns it and by when."""

    idea: str
    owner: str
    who: str
    target: str | None = None


@dataclass(frozen=True, slots=True)
class StageNotes:
    """The worksheet's as-is notes and to-be ideas of a stage."""

    as_is: tuple[str, ...] = ()
    ideas: tuple[Idea, ...] = ()


@dataclass(frozen=True, slots=True)
class Persona:
    """A patient segment: who matches (conditions on the opening event) and where to focus."""

    id: str
    name: str
    conditions: tuple[Condition, ...] = ()
    description: str = ""
    focus: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        return all(c.holds(event) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class Stage:
    id: str
    name: str
    category: StageCategory
    enter_on: tuple[Trigger, ...]
    messages: tuple[MessageSpec, ...] = ()
    touchpoints: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    success_metric: SuccessMetric | None = None
    final: bool = False
    notes: StageNotes = StageNotes()


@dataclass(frozen=True, slots=True)
class Exit:
    """An event that ends an episode, cancelling what it still had pending."""

    trigger: Trigger
    outcome: str


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours in which nothing is sent; `start` after `end` wraps midnight."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `limit` messages per recipient and channel in any `per` window."""

    limit: int
    per: timedelta


@dataclass(frozen=True)
class Flow:
    id: str
    version: int
    title: str
    timezone: str
    default_language: str
    languages: tuple[str, ...]
    starts_on: tuple[Trigger, ...]
    stages: tuple[Stage, ...]
    exits: tuple[Exit, ...] = ()
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    frequency_caps: Mapping[Channel, FrequencyCap] = field(default_factory=dict)
    description: str = ""
    personas: tuple[Persona, ...] = ()

    def persona_of(self, event: Event) -> str | None:
        """The first persona the event (an episode's opening event) matches, if any."""
        return next((p.id for p in self.personas if p.matches(event)), None)

    @cached_property
    def stage_index(self) -> Mapping[str, int]:
        return {stage.id: i for i, stage in enumerate(self.stages)}

    @cached_property
    def event_types(self) -> frozenset[EventType]:
        """Every event type that can change a journey on this flow."""
        types = {t.event for t in self.starts_on}
        types |= {e.trigger.event for e in self.exits}
        for stage in self.stages:
            types |= {t.event for t in stage.enter_on}
            for message in stage.messages:
                types |= {t.event for t in message.send_on}
                types |= {t.event for t in message.cancel_on}
                types |= {t.event for t in message.unless}
        # Every flow follows its appointments and encounters, declared or not.
        types |= {
            EventType.APPOINTMENT_BOOKED,
            EventType.APPOINTMENT_RESCHEDULED,
            EventType.APPOINTMENT_CANCELLED,
            EventType.PATIENT_UPDATED,
        }
        return frozenset(types)

    def stage(self, stage_id: str) -> Stage:
        return self.stages[self.stage_index[stage_id]]

    # Computed once per flow. The engine reads only `plan`; `specs` is for the
    # gates, the console and the reports.

    @cached_property
    def specs(self) -> Mapping[str, tuple[Stage, MessageSpec]]:
        """Every message by id, with its stage."""
        return {spec.id: (stage, spec) for stage in self.stages for spec in stage.messages}

    @cached_property
    def plan(self) -> FlowPlan:
        """The flow as the fold reads it: triggers compiled and indexed by event type."""
        from .plan import FlowPlan

        return FlowPlan.of(self)

    def __getstate__(self) -> dict[str, object]:
        # The plan holds compiled closures, which do not pickle; it is rebuilt on use.
        state = dict(self.__dict__)
        state.pop("plan", None)
        return state
